"""The local Apache Kafka broker in KRaft mode: one node by default (one JVM is both broker and
controller), or a cluster of ``ENGAGEMENT_KAFKA_NODES`` such nodes on this machine (each a broker
and a voting controller; topics then get three replicas and ``min.insync.replicas=2``).

The broker is the real Apache Kafka server, fetched from Maven Central by
``streaming/kafka/pom.xml`` and run as ``java -cp <libs>/* kafka.Kafka server.properties``,
detached from the process that started it, so ``engagement kafka start`` returns and the broker
keeps running until ``engagement kafka stop``. Everything it writes lives under ``settings.kafka_dir``::

    $ENGAGEMENT_HOME/kafka/
        server.properties   generated from the settings at every start
        broker.pid          pid of the running broker
        data/               log.dirs and the KRaft metadata log (formatted once)
        logs/server.log     the broker's log (log4j 2, see streaming/kafka/log4j2.properties)
        logs/kafka.out      the JVM's own stdout/stderr (crashes before logging starts)

A cluster keeps the same files per node under ``kafka/node-<id>/``, and the cluster id it was
formatted with in ``kafka/cluster.id``.

The jars are shared by all homes (``ENGAGEMENT_KAFKA_LIBS``, default
``~/.cache/engagement/kafka-<version>/libs``) so test sessions with temporary homes do not fetch
them again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from base64 import urlsafe_b64encode
from collections import deque
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import psutil

from core import maven
from core.errors import UserError
from core.java import java_executable
from core.settings import PREFIX, Settings

RESOURCES = Path(__file__).resolve().parent / "kafka"
POM = RESOURCES / "pom.xml"
LOG4J_CONFIG = RESOURCES / "log4j2.properties"

# The same main classes bin/kafka-server-start.sh and bin/kafka-storage.sh run.
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
# Kafka 4 brokers need Java 17 (KIP-1013).
MIN_JAVA = 17
# kafka.logs.dir, message.max.bytes etc. are Kafka's names; these are ours.
LIBS_ENV = PREFIX + "KAFKA_LIBS"
_PROBE_TIMEOUT_S = 3.0

# Brokers this Python process launched. Keeping the Popen objects lets us reap a broker that
# exited (otherwise it lingers as a zombie that "exists" to every liveness check) and keeps
# Python from warning that a subprocess was garbage-collected while still running.
_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(UserError):
    """The local broker could not be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class BrokerStatus:
    """What is true about the local broker right now."""

    running: bool  # our broker process (this home's server.properties) is alive
    pid: int | None
    bootstrap_servers: str
    healthy: bool  # it answers a metadata request with this data dir's cluster id
    data_dir: Path
    log_file: Path
    version: str
    message: str  # one line for humans
    cluster_id: str | None = None


@dataclass(frozen=True)
class _Paths:
    kafka_dir: Path
    data_dir: Path
    logs_dir: Path
    log_file: Path
    stdout_file: Path
    server_properties: Path
    pid_file: Path
    lock_file: Path

    @classmethod
    def at(cls, kafka_dir: Path) -> _Paths:
        # Absolute, because the path is part of the broker's command line (that is how we
        # recognise our own process) and the CLI may run from any working directory.
        kafka_dir = kafka_dir.expanduser().resolve()
        logs_dir = kafka_dir / "logs"
        return cls(
            kafka_dir=kafka_dir,
            data_dir=kafka_dir / "data",
            logs_dir=logs_dir,
            log_file=logs_dir / "server.log",
            stdout_file=logs_dir / "kafka.out",
            server_properties=kafka_dir / "server.properties",
            pid_file=kafka_dir / "broker.pid",
            lock_file=kafka_dir / ".broker.lock",
        )


@dataclass(frozen=True)
class _Node:
    """One Kafka process of this home: a broker and a KRaft controller in one JVM."""

    node_id: int
    host: str
    port: int  # the client listener
    controller_port: int
    paths: _Paths
    voters: str  # controller.quorum.voters of the whole cluster
    size: int  # nodes in the cluster

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _nodes(settings: Settings) -> list[_Node]:
    """The nodes of this home's cluster: ``ENGAGEMENT_KAFKA_NODES`` of them, node i listening at
    the i-th address of ``ENGAGEMENT_BOOTSTRAP_SERVERS`` with its controller on
    ``ENGAGEMENT_KAFKA_CONTROLLER_PORT + i - 1``. One node keeps its files in ``kafka_dir``
    itself, several in ``kafka_dir/node-<i>``."""
    addresses = [_split_address(a) for a in settings.bootstrap_servers.split(",")][: settings.kafka_nodes]
    controllers = [settings.kafka_controller_port + i for i in range(settings.kafka_nodes)]
    voters = ",".join(f"{i + 1}@{host}:{controllers[i]}" for i, (host, _) in enumerate(addresses))
    return [
        _Node(
            node_id=i + 1,
            host=host,
            port=port,
            controller_port=controllers[i],
            paths=_Paths.at(settings.kafka_dir if settings.kafka_nodes == 1 else settings.kafka_dir / f"node-{i + 1}"),
            voters=voters,
            size=settings.kafka_nodes,
        )
        for i, (host, port) in enumerate(addresses)
    ]


def node_pids(settings: Settings) -> dict[int, int | None]:
    """Node id -> pid of its running process (None when it is not running)."""
    return {node.node_id: _find_broker(node.paths) for node in _nodes(settings)}


# --------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------
@cache
def kafka_version() -> str:
    """The pinned Apache Kafka version: ``kafka.version`` in ``streaming/kafka/pom.xml``."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise BrokerError(f"{POM} has no <kafka.version> property")
    return node.text.strip()


def libs_dir() -> Path:
    """Where the broker's jars live: ``$ENGAGEMENT_KAFKA_LIBS`` or a per-version user cache."""
    default = f"~/.cache/engagement/kafka-{kafka_version()}/libs"
    return maven.libs_folder(LIBS_ENV, default)


def install(settings: Settings, *, quiet: bool = False) -> Path:
    """Make sure the broker's jars are in :func:`libs_dir` and return that directory.

    Fetches them once with Maven (``dependency:copy-dependencies`` on streaming/kafka/pom.xml);
    afterwards this only reads a marker file. A directory named by ``ENGAGEMENT_KAFKA_LIBS``
    that already holds ``kafka_2.13-<version>.jar`` is used as it is (for machines that cannot
    reach Maven Central: copy the jars there by other means). ``settings`` is accepted so
    every broker function takes the same first argument; the jars do not depend on it.
    """
    del settings  # the jar cache is shared by all homes on purpose
    libs = libs_dir()
    if _hand_filled(libs):
        return libs
    if not maven.installed(POM, libs):
        _java_executable()  # Maven needs a JDK too; say so before Maven says it less clearly
    try:
        return maven.fetch(
            POM, libs, what=f"Apache Kafka {kafka_version()}", required_jar=f"kafka_2.13-{kafka_version()}.jar",
            size_hint="45 MB", quiet=quiet,
        )  # fmt: skip
    except maven.MavenError as exc:
        raise BrokerError(
            f"{exc.one_line()} Or put the jars of Kafka {kafka_version()} in a directory and point {LIBS_ENV} at it.",
            details=exc.details,
        ) from exc


def _hand_filled(libs: Path) -> bool:
    """A directory the user named explicitly and filled by hand (no marker): trusted as it is."""
    return (
        bool(os.environ.get(LIBS_ENV))
        and not (libs / maven.MARKER).is_file()
        and (libs / f"kafka_2.13-{kafka_version()}.jar").is_file()
    )


def _java_executable() -> str:
    java = java_executable()
    if java is None:
        raise BrokerError(
            f"Java is not on PATH; Kafka {kafka_version()} needs a JDK {MIN_JAVA} or newer. "
            "Install one (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless; macOS: brew "
            "install openjdk@17) or set JAVA_HOME."
        )
    return java


def _check_java_version(java: str) -> None:
    done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return  # an unusual vendor string; let the JVM itself complain if it is too old
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major}; Kafka {kafka_version()} needs Java {MIN_JAVA} or newer. "
            "Install a newer JDK and put it first on PATH or point JAVA_HOME at it."
        )


# --------------------------------------------------------------------------------------------
# start / stop / status
# --------------------------------------------------------------------------------------------
def start(settings: Settings, *, timeout: float = 60) -> BrokerStatus:
    """Start this home's broker (or every node of its cluster) where it is not running, and wait
    until each answers metadata requests.

    Idempotent: a running, healthy node is left alone; a node that died is started again. The
    first start formats the KRaft storage under each node's ``data``; later starts reuse it
    (topics and offsets survive restarts). Raises :class:`BrokerError` when a port is taken,
    Java is missing, or a node does not answer within ``timeout`` seconds (``details`` holds
    the end of its log).
    """
    nodes = _nodes(settings)
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    # One start or stop at a time per home: two `engagement kafka start` at once must not
    # launch two JVMs on the same data directory.
    with maven.locked(settings.kafka_dir / ".broker.lock"):
        launched: list[tuple[_Node, subprocess.Popen[bytes], str, int]] = []
        adopted: list[tuple[_Node, int]] = []
        java = libs = None
        for node in nodes:
            pid = _find_broker(node.paths)
            if pid is not None:
                adopted.append((node, pid))
                continue
            _remove_pid_file(node.paths)
            _check_ports(settings, node)
            if java is None:
                java = _java_executable()
                _check_java_version(java)
                libs = install(settings, quiet=True)
            node.paths.data_dir.mkdir(parents=True, exist_ok=True)
            node.paths.logs_dir.mkdir(parents=True, exist_ok=True)
            node.paths.server_properties.write_text(_server_properties(settings, node))
            cluster_id = _format_storage(java, libs, node, _cluster_id_for(settings, nodes))
            # server.log is appended to across restarts; an error should quote this start only.
            log_offset = node.paths.log_file.stat().st_size if node.paths.log_file.exists() else 0
            process = _launch(java, libs, settings, node.paths)
            node.paths.pid_file.write_text(f"{process.pid}\n")
            launched.append((node, process, cluster_id, log_offset))
        # Every node is launched before any is awaited: a node of a cluster answers only once a
        # majority of controllers is up.
        for node, pid in adopted:
            _adopt_running(settings, node, pid, timeout)
        for node, process, cluster_id, log_offset in launched:
            _wait_until_healthy(node, process, cluster_id, timeout, log_offset)
        return status(settings)


def stop(settings: Settings, *, timeout: float = 30) -> bool:
    """Stop this home's broker (every node): SIGTERM (a clean shutdown), SIGKILL only after
    ``timeout`` s.

    Returns True when a node was running and is now gone, False when there was nothing to stop.
    Idempotent; removes the pid files either way.
    """
    nodes = _nodes(settings)
    if not settings.kafka_dir.exists() and all(_find_broker(n.paths) is None for n in nodes):
        return False  # nothing to stop, and no reason to create the directory for a lock file
    stopped = False
    with maven.locked(settings.kafka_dir / ".broker.lock"):
        for node in reversed(nodes):
            stopped |= _stop_node(node, timeout)
    return stopped


def _stop_node(node: _Node, timeout: float) -> bool:
    pid = _find_broker(node.paths)
    if pid is None:
        _remove_pid_file(node.paths)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        # A clean shutdown flushes and closes the logs; only a hung JVM gets here.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 10):
            raise BrokerError(
                f"Kafka (pid {pid}) did not exit after SIGTERM and SIGKILL; check it with "
                f"`ps -p {pid}` and stop it by hand."
            )
    _remove_pid_file(node.paths)
    return True


def status(settings: Settings) -> BrokerStatus:
    """Report whether this home's broker (every node) runs and answers, without changing anything.

    A pid file whose process is gone, or whose pid now belongs to some other program, counts
    as not running. ``healthy`` means each node answered a metadata request at its address with
    the cluster id of its data directory.
    """
    nodes = _nodes(settings)
    if len(nodes) == 1:
        return _node_status(settings, nodes[0])
    each = [_node_status(settings, node) for node in nodes]
    pids = [s.pid for s in each]
    message = f"Kafka cluster of {len(nodes)} nodes: " + "; ".join(
        f"node {node.node_id} at {node.address}: "
        + ("running and answering" if s.healthy else "running, not answering" if s.running else "not running")
        + (f" (pid {s.pid})" if s.pid else "")
        for node, s in zip(nodes, each)
    )
    if not all(s.healthy for s in each):
        message += ". Start the missing nodes with `engagement kafka start`."
    return replace(
        each[0],
        running=all(p is not None for p in pids),
        pid=pids[0],
        bootstrap_servers=settings.bootstrap_servers,
        healthy=all(s.healthy for s in each),
        message=message,
    )


def _node_status(settings: Settings, node: _Node) -> BrokerStatus:
    paths = node.paths
    pid = _find_broker(paths)
    cluster_id = _stored_cluster_id(paths)
    answered = _probe_cluster_id(node.address)
    version = kafka_version()
    where = node.address
    if pid is None:
        if answered is not None:
            message = (
                f"Kafka is not running from {paths.kafka_dir}, but another Kafka broker (cluster "
                f"{answered}) answers at {where}. Use it, stop it, or choose another port with "
                f"{PREFIX}BOOTSTRAP_SERVERS."
            )
        else:
            message = "Kafka is not running. Start it with `engagement kafka start`."
        return _status(settings, paths, None, False, message, cluster_id)
    if answered is not None and answered == cluster_id:
        message = f"Kafka {version} is running (pid {pid}) and answering at {where}."
        return _status(settings, paths, pid, True, message, cluster_id)
    if _config_changed(settings, node):
        message = (
            f"Kafka is running (pid {pid}) with settings other than the current ones (e.g. "
            f"{PREFIX}BOOTSTRAP_SERVERS): run `engagement kafka stop` and start it again."
        )
    elif answered is not None:
        message = (
            f"Kafka is running (pid {pid}), but {where} is answered by another cluster "
            f"({answered}); see {paths.log_file}."
        )
    else:
        message = (
            f"Kafka is running (pid {pid}) but does not answer at {where} yet: it is starting, "
            f"or stuck (see {paths.log_file})."
        )
    return _status(settings, paths, pid, False, message, cluster_id)


def _status(
    settings: Settings,
    paths: _Paths,
    pid: int | None,
    healthy: bool,
    message: str,
    cluster_id: str | None,
) -> BrokerStatus:
    return BrokerStatus(
        running=pid is not None,
        pid=pid,
        bootstrap_servers=settings.bootstrap_servers,
        healthy=healthy,
        data_dir=paths.data_dir,
        log_file=paths.log_file,
        version=kafka_version(),
        message=message,
        cluster_id=cluster_id,
    )


def _adopt_running(settings: Settings, node: _Node, pid: int, timeout: float) -> BrokerStatus:
    """start() found this node already running: wait for it rather than launch another."""
    paths = node.paths
    if _config_changed(settings, node):
        raise BrokerError(
            f"Kafka is already running (pid {pid}) with other settings than the current ones "
            f"(see {paths.server_properties}). Run `engagement kafka stop`, then start it again."
        )
    deadline = time.monotonic() + timeout
    while True:
        current = _node_status(settings, node)
        if current.healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # it may be a broker another `start` launched a moment ago
    if not current.healthy:
        raise BrokerError(
            f"Kafka is running (pid {pid}) but did not answer at {node.address} "
            f"within {timeout:.0f}s. Run `engagement kafka stop`, then start it again "
            f"(--verbose shows the end of its log, {paths.log_file}).",
            details=_log_tail(paths),
        )
    return current


# --------------------------------------------------------------------------------------------
# Launching
# --------------------------------------------------------------------------------------------
def _server_properties(settings: Settings, node: _Node) -> str:
    host, port, controller, paths = node.host, node.port, node.controller_port, node.paths
    replicas, in_sync = replication_for(node.size)
    properties = {
        # KRaft combined mode: each process is a broker and a controller. A static voter set
        # (controller.quorum.voters) rather than a dynamic quorum, because the voters then
        # come from this file and the controller ports can change between restarts.
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": node.voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": paths.data_dir,
        # Internal topics replicated like the contract's (one node: one replica is all there is).
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": in_sync,
        "min.insync.replicas": in_sync,
        "default.replication.factor": replicas,
        # Fewer internal partitions than the default 50: creating 50 partition logs on the
        # first consumer-group join takes seconds on a small machine and buys nothing here.
        "offsets.topic.num.partitions": 5,
        "transaction.state.log.num.partitions": 5,
        "share.coordinator.state.topic.num.partitions": 5,
        "num.partitions": settings.topic_partitions,
        # Topics are created explicitly (engagement topics create) with the contract's names;
        # a typo in a producer must fail instead of creating a stray topic.
        "auto.create.topics.enable": "false",
        # The loader must receive messages over the contract's 64 KiB limit to dead-letter
        # them, so the broker accepts record batches up to 1 MiB (plus batch overhead).
        "message.max.bytes": 1024 * 1024 + 1024,
        "replica.fetch.max.bytes": 1024 * 1024 + 1024,
        # Consumers in tests and the demo join one at a time; waiting 3 s for more only slows
        # every group start.
        "group.initial.rebalance.delay.ms": 0,
        # Modest segments: a laptop broker rolls and deletes in small steps.
        "log.segment.bytes": 64 * 1024 * 1024,
        "log.retention.hours": 168,
        "log.retention.check.interval.ms": 60_000,
        # The compaction buffer (for __consumer_offsets) defaults to 128 MiB of heap; that is a
        # quarter of the default 512 MiB heap, and 16 MiB is plenty for one machine.
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
    lines = [
        "# Generated by streaming/broker.py from the ENGAGEMENT_* settings at every start;",
        "# edits here are overwritten. Change the settings instead.",
    ]
    lines += [f"{key}={value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def replication_for(nodes: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``nodes``: three copies and
    two in sync where there are three nodes or more, so one node can fail without losing an
    acknowledged write or stopping producers that use acks=all."""
    replicas = min(3, nodes)
    return replicas, 2 if replicas >= 3 else 1


def _config_changed(settings: Settings, node: _Node) -> bool:
    paths = node.paths
    try:
        return paths.server_properties.read_text() != _server_properties(settings, node)
    except FileNotFoundError:
        return False


def _new_cluster_id() -> str:
    """A fresh random cluster id, kept by Kafka in data/meta.properties from then on: 16 random
    bytes, URL-safe base64 without padding, like Kafka's Uuid.randomUuid()."""
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # kafka-storage would read a leading "-" as an option; Kafka's own generator avoids it too.
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id_for(settings: Settings, nodes: list[_Node]) -> str:
    """The cluster id to format a new node with: the one its peers already hold, else new.

    All nodes of a cluster are formatted with one id (kept in ``kafka_dir/cluster.id`` until
    every node has it in its own data directory)."""
    for node in nodes:
        stored = _stored_cluster_id(node.paths)
        if stored is not None:
            return stored
    record = settings.kafka_dir / "cluster.id"
    if len(nodes) > 1 and record.is_file():
        return record.read_text().strip()
    cluster_id = _new_cluster_id()
    if len(nodes) > 1:
        record.write_text(cluster_id + "\n")
    return cluster_id


def _format_storage(java: str, libs: Path, node: _Node, cluster_id: str) -> str:
    """Format the KRaft storage once per data dir; return the cluster id it holds."""
    paths = node.paths
    existing = _stored_cluster_id(paths)
    if existing is not None:
        return existing
    # No log4j configuration: log4j's default prints errors to stderr, which is captured below,
    # and the tool's INFO lines stay out of the broker's server.log.
    command = [
        java, "-cp", str(libs / "*"), STORAGE_TOOL_MAIN, "format",
        "--cluster-id", cluster_id, "--config", str(paths.server_properties), "--ignore-formatted",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    stored = _stored_cluster_id(paths)
    if done.returncode != 0 or stored is None:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise BrokerError(
            f"Formatting the Kafka storage in {paths.data_dir} failed (exit {done.returncode}). "
            f"If that directory holds data from another Kafka, move it away and start again "
            "(--verbose shows kafka-storage's output).",
            details=output,
        )
    return stored


def _launch(java: str, libs: Path, settings: Settings, paths: _Paths) -> subprocess.Popen[bytes]:
    heap = settings.kafka_heap.strip()
    if not re.fullmatch(r"\d+[kKmMgG]?", heap):
        raise BrokerError(
            f"{PREFIX}KAFKA_HEAP={settings.kafka_heap!r} is not a JVM heap size like 512m or 1g."
        )
    command = [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        # The GC settings of Kafka's own kafka-run-class.sh.
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        # A broker out of memory should die (and show as not running), not limp on.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs_dir}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        str(libs / "*"),
        BROKER_MAIN,
        str(paths.server_properties),
    ]
    # Truncated: only this run's JVM output (e.g. "Too small maximum heap") is of interest.
    with open(paths.stdout_file, "wb") as out:
        # A session of its own: Ctrl-C in the terminal that ran `engagement kafka start` must
        # not reach the broker, and the broker outlives the command that started it.
        process = subprocess.Popen(
            command,
            cwd=paths.kafka_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _LAUNCHED[process.pid] = process
    return process


def _wait_until_healthy(
    node: _Node,
    process: subprocess.Popen[bytes],
    cluster_id: str,
    timeout: float,
    log_offset: int,
) -> None:
    paths = node.paths
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _remove_pid_file(paths)
            raise BrokerError(
                f"Kafka exited during start-up (exit code {process.returncode}): its log "
                f"({paths.log_file}) says why; --verbose shows its last lines.",
                details=_log_tail(paths, log_offset),
            )
        if _probe_cluster_id(node.address) == cluster_id:
            return
        time.sleep(0.25)
    # Do not leave a half-started JVM behind: the next start would adopt it and wait again.
    _terminate(process)
    _remove_pid_file(paths)
    raise BrokerError(
        f"Kafka did not answer at {node.address} within {timeout:.0f}s and was "
        "stopped. On a busy or slow machine, start it with a longer timeout; otherwise the log "
        f"({paths.log_file}) says why; --verbose shows its last lines.",
        details=_log_tail(paths, log_offset),
    )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------
def _check_ports(settings: Settings, node: _Node) -> None:
    host, port, controller = node.host, node.port, node.controller_port
    if port == controller:
        raise BrokerError(
            f"{PREFIX}BOOTSTRAP_SERVERS and {PREFIX}KAFKA_CONTROLLER_PORT both use port {port}; "
            "the broker needs two different ports. Change one of them."
        )
    checks = [
        (port, f"the Kafka listener, from {PREFIX}BOOTSTRAP_SERVERS={settings.bootstrap_servers}",
         f"export {PREFIX}BOOTSTRAP_SERVERS={host}:<free port>"),
        (controller, f"the KRaft controller, from {PREFIX}KAFKA_CONTROLLER_PORT={controller}",
         f"export {PREFIX}KAFKA_CONTROLLER_PORT=<free port>"),
    ]  # fmt: skip
    for number, role, fix in checks:
        if not _port_free(host, number):
            raise BrokerError(
                f"Port {number} on {host} ({role}) is already in use{_port_owner(number)}. "
                f"Stop whatever holds it, or choose a free port: {fix}"
            )


def _port_free(host: str, port: int) -> bool:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BrokerError(
            f"Cannot resolve {host!r} from {PREFIX}BOOTSTRAP_SERVERS: {exc}. Use an address of "
            "this machine, e.g. 127.0.0.1:9092."
        ) from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # SO_REUSEADDR so that a port in TIME_WAIT (a broker stopped a moment ago) counts
            # as free, as it does for the JVM; a listening socket still makes bind() fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                # e.g. no IPv6 on this machine for one of localhost's addresses: irrelevant
    return True


def _port_owner(port: int) -> str:
    # Best effort: naming the process saves a trip to lsof, but listing sockets of other
    # users' processes may be refused (macOS without root), and then we just say less.
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return ""
                process = psutil.Process(conn.pid)
                cmdline = process.cmdline()
                if BROKER_MAIN in cmdline:
                    return f" by another Kafka broker (pid {conn.pid}, config {cmdline[-1]})"
                return f" by {process.name()} (pid {conn.pid})"
    except (psutil.Error, OSError):
        pass
    return ""


# --------------------------------------------------------------------------------------------
# Finding our process
# --------------------------------------------------------------------------------------------
def _find_broker(paths: _Paths) -> int | None:
    """The pid of this home's broker, or None. Never trusts the pid file alone."""
    pid = _read_pid_file(paths)
    if pid is not None and _is_our_broker(pid, paths):
        return pid
    # The pid file may be missing or stale while the broker runs (deleted by hand, or a
    # start interrupted between launch and writing it): look for the command line instead.
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if BROKER_MAIN in cmdline and str(paths.server_properties) in cmdline:
            if _is_our_broker(process.pid, paths):
                return process.pid
    return None


def _is_our_broker(pid: int, paths: _Paths) -> bool:
    launched = _LAUNCHED.get(pid)
    if launched is not None and launched.poll() is not None:
        del _LAUNCHED[pid]
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    # The pid may have been reused by an unrelated program since the pid file was written.
    return BROKER_MAIN in cmdline and str(paths.server_properties) in cmdline


def _wait_gone(pid: int, timeout: float) -> bool:
    launched = _LAUNCHED.get(pid)
    try:
        if launched is not None:
            launched.wait(timeout)  # also reaps it, so it does not linger as a zombie
            del _LAUNCHED[pid]
        else:
            psutil.Process(pid).wait(timeout)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def _read_pid_file(paths: _Paths) -> int | None:
    try:
        return int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _remove_pid_file(paths: _Paths) -> None:
    paths.pid_file.unlink(missing_ok=True)


def _stored_cluster_id(paths: _Paths) -> str | None:
    try:
        text = (paths.data_dir / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


# --------------------------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------------------------
def _probe_cluster_id(bootstrap_servers: str) -> str | None:
    """The cluster id the broker at ``bootstrap_servers`` reports, or None if none answers."""
    host, port = _listener_address(bootstrap_servers)
    # A plain connect first: it fails at once when nothing listens, whereas the admin client
    # retries with back-off for its whole bootstrap timeout and logs a warning per attempt.
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return None
    from kafka.admin import KafkaAdminClient  # imported here: status() is used by light CLIs

    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="engagement-broker-probe",
            request_timeout_ms=int(_PROBE_TIMEOUT_S * 1000),
            bootstrap_timeout_ms=int(_PROBE_TIMEOUT_S * 1000),
            reconnect_backoff_max_ms=500,
        )
        return admin.describe_cluster()["cluster_id"]
    except Exception:  # any failure to answer means "not healthy"; status() says what to do
        return None
    finally:
        if admin is not None:
            admin.close()


def _listener_address(bootstrap_servers: str) -> tuple[str, int]:
    """The first bootstrap server: the one a probe asks."""
    return _split_address(bootstrap_servers.split(",")[0])


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _log_tail(paths: _Paths, log_offset: int = 0, lines: int = 30) -> str:
    """The last lines of the JVM's output and of server.log after ``log_offset``, for errors."""
    parts = []
    for path, offset in ((paths.stdout_file, 0), (paths.log_file, log_offset)):
        try:
            with open(path, "rb") as handle:
                if offset <= os.fstat(handle.fileno()).st_size:  # else it rolled over: all
                    handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        tail = deque(text.splitlines(), maxlen=lines)
        if tail:
            parts.append(f"\n--- last lines of {path} ---\n" + "\n".join(tail))
    return "".join(parts) or f"\n(nothing logged in {paths.logs_dir})"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        # Hold them all open until each is known, so the OS does not hand out one port twice.
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def settings_on_free_ports(home: Path, *, partitions: int, kafka_heap: str = "512m", nodes: int = 1) -> Settings:
    """Settings for a throw-away broker or cluster (tests, benchmarks) in ``home`` on free ports."""
    listeners = free_ports(nodes)
    return Settings(
        home=home,
        bootstrap_servers=",".join(f"127.0.0.1:{port}" for port in listeners),
        kafka_controller_port=_free_run_of_ports(nodes, avoid=set(listeners)),
        kafka_nodes=nodes,
        topic_partitions=partitions,
        kafka_heap=kafka_heap,
    )


def _free_run_of_ports(count: int, *, avoid: set[int]) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 (the controllers' ports)."""
    for _ in range(200):
        (first,) = free_ports(1)
        run = range(first, first + count)
        if first + count <= 65535 and not avoid & set(run) and all(_port_free("127.0.0.1", p) for p in run):
            return first
    raise BrokerError(f"found no {count} consecutive free ports on 127.0.0.1")
