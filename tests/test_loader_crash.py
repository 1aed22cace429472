"""The loader against a real broker: nothing lost, nothing doubled, whatever happens to it.

One module-scoped data set (``produced``): 200,000 valid events over both platform topics,
2,000 identity links and a few hundred invalid messages of every kind the contract rejects,
spread through the stream. Every test loads all of it with its own ENGAGEMENT_HOME and its own
consumer group, runs ``engagement load`` as a real subprocess and does something unpleasant to
it (SIGKILL, a broker restart, a second loader, SIGTERM), then checks the strongest property
there is: every (topic, partition, offset) of the input is in exactly one row of
bronze/events, bronze/identity or quarantine; the event and link ids in bronze are exactly the
ids produced, each once; quarantine holds exactly the invalid messages.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from core import layout, loader_log
from core.contract import (
    BAD_ENCODING,
    BAD_JSON,
    BAD_VALUE,
    DEADLETTER_TOPIC,
    IDENTITY_TOPIC,
    KUAISHOU_TOPIC,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    TOPIC_MISMATCH,
    WECHAT_TOPIC,
    WRONG_TYPE,
)
from core.settings import Settings
from core.storage import LocalStore, Store, open_store
from streaming import broker, bronze
from streaming.loader import ERROR_HEADER_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
EVENTS_PER_PLATFORM = 100_000
LINKS = 2_000
INVALID_EVERY = 600  # one invalid message per this many valid events, of a rotating kind
SOURCE_TOPICS = (KUAISHOU_TOPIC, WECHAT_TOPIC, IDENTITY_TOPIC)
BATCH_RECORDS = 5_000  # small batches: many publishes, many points to be killed at
LOADER_TIMEOUT_S = 240


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------
def _event(platform: str, i: int) -> dict:
    kind = ("like", "share", "join")[i % 3]
    prefix = "ks" if platform == "kuaishou" else "wx"
    event = {
        "event_id": f"{prefix}-{i:07d}",
        "schema_version": 1,
        "event_type": kind,
        "platform": platform,
        "user_id": f"{prefix}-user-{i % 5_000}",
        "event_time": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:15:03.250+08:00",
        "content_id": f"content-{i % 900}" if kind != "join" else None,
        "group_id": f"group-{i % 70}" if kind != "share" or i % 2 else None,
        "channel": ("invite", "qr_code", "content")[i % 3] if kind == "join" else None,
        "inviter_user_id": f"{prefix}-user-{(i * 7) % 5_000}" if kind == "join" and i % 2 else None,
        "target_platform": ("kuaishou", "wechat")[i % 2] if kind == "share" else None,
    }
    if i % 50 == 0:
        event["client"] = "ios"  # an unknown extra field: valid, kept in bronze
    return event


def _link(i: int) -> dict:
    return {
        "link_id": f"link-{i:05d}",
        "kuaishou_user_id": f"ks-user-{i}",
        "wechat_openid": f"openid-{i}",
        "wechat_unionid": f"unionid-{i // 2}" if i % 3 else None,
        "linked_at": "2026-03-01T08:00:00Z",
    }


def _encode(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _invalid_kinds() -> list[tuple[str, str, bytes | None, bytes | None, str]]:
    """Each kind of invalid message: (name, topic, key, value, expected error class).

    Values are built from valid records so that each breaks exactly one rule.
    """
    base = _event("kuaishou", 3)  # a like
    share = _event("kuaishou", 4)
    join = _event("kuaishou", 5)

    def without(record: dict, name: str) -> bytes:
        return _encode({k: v for k, v in record.items() if k != name})

    def with_(record: dict, **changes) -> bytes:
        return _encode({**record, **changes})

    return [
        ("oversized", KUAISHOU_TOPIC, b"ks-user-1", with_(base, padding="x" * 70_000), TOO_LARGE),
        ("invalid_utf8", WECHAT_TOPIC, b"wx-user-1", b'{"event_id": "\xff\xfe"}', BAD_ENCODING),
        ("not_json", KUAISHOU_TOPIC, b"ks-user-2", b'{"event_id": "x", ', BAD_JSON),
        ("json_array", WECHAT_TOPIC, b"wx-user-2", b"[1, 2, 3]", NOT_OBJECT),
        ("json_string", KUAISHOU_TOPIC, None, b'"just a string"', NOT_OBJECT),
        ("tombstone", WECHAT_TOPIC, b"wx-user-3", None, NOT_OBJECT),
        ("wrong_type_version", KUAISHOU_TOPIC, b"ks-user-3", with_(base, schema_version="1"), WRONG_TYPE),
        ("wrong_type_user", WECHAT_TOPIC, b"wx-user-4", with_(_event("wechat", 3), user_id=42), WRONG_TYPE),
        ("unknown_event_type", KUAISHOU_TOPIC, b"ks-user-4", with_(base, event_type="comment"), BAD_VALUE),
        ("unknown_channel", KUAISHOU_TOPIC, b"ks-user-5", with_(join, channel="carrier_pigeon"), BAD_VALUE),
        ("unknown_target", KUAISHOU_TOPIC, b"ks-user-6", with_(share, target_platform="weibo"), BAD_VALUE),
        ("platform_mismatch", WECHAT_TOPIC, b"ks-user-7", _encode(base), TOPIC_MISMATCH),
        ("like_without_content", KUAISHOU_TOPIC, b"ks-user-8", without(base, "content_id"), MISSING_FIELD),
        ("share_without_target", KUAISHOU_TOPIC, b"ks-user-9", without(share, "target_platform"), MISSING_FIELD),
        ("join_without_group", KUAISHOU_TOPIC, b"ks-user-10", without(join, "group_id"), MISSING_FIELD),
        ("join_without_channel", KUAISHOU_TOPIC, b"ks-user-11", without(join, "channel"), MISSING_FIELD),
        ("missing_event_id", WECHAT_TOPIC, b"wx-user-5", without(_event("wechat", 6), "event_id"), MISSING_FIELD),
        ("bad_event_time", KUAISHOU_TOPIC, b"ks-user-12", with_(base, event_time="2026-03-01 20:15"), BAD_VALUE),
        ("link_without_openid", IDENTITY_TOPIC, b"ks-user-13", without(_link(1), "wechat_openid"), MISSING_FIELD),
    ]


def _invalid_messages(n: int) -> Iterator[tuple[str, str, bytes | None, bytes | None, str]]:
    """``n`` invalid messages, the kinds in rotation."""
    kinds = _invalid_kinds()
    for i in range(n):
        name, topic, key, value, error_class = kinds[i % len(kinds)]
        # Most copies get bytes of their own: a replay that mixed two of them up would show.
        if value is not None and value.startswith(b"{") and error_class not in (BAD_JSON, BAD_ENCODING):
            value = value[:-1] + f',"copy":{i}}}'.encode()
        yield name, topic, key, value, error_class


INVALID_KINDS = len(_invalid_kinds())


@dataclass
class Produced:
    event_ids: set[str]
    link_ids: set[str]
    # (topic, partition, offset) -> (kind, key, value, error class)
    invalid: dict[tuple[str, int, int], tuple[str, bytes | None, bytes | None, str]]
    end_offsets: dict[tuple[str, int], int]
    settings: Settings

    @property
    def total(self) -> int:
        return sum(self.end_offsets.values())

    def all_coordinates(self) -> set[tuple[str, int, int]]:
        return {(t, p, o) for (t, p), end in self.end_offsets.items() for o in range(end)}


@pytest.fixture(scope="module")
def produced(fresh_topics: Settings) -> Produced:
    """Produce the data set once for the module (the topics start empty)."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import TopicPartition

    producer = KafkaProducer(
        bootstrap_servers=fresh_topics.bootstrap_servers,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=1024 * 1024,
    )
    event_ids: set[str] = set()
    link_ids: set[str] = set()
    invalid_futures = []
    invalid_messages = _invalid_messages(2 * EVENTS_PER_PLATFORM // INVALID_EVERY)
    try:
        for i in range(EVENTS_PER_PLATFORM):
            for platform, topic in (("kuaishou", KUAISHOU_TOPIC), ("wechat", WECHAT_TOPIC)):
                event = _event(platform, i)
                event_ids.add(event["event_id"])
                producer.send(topic, key=event["user_id"].encode(), value=_encode(event))
            if i % (EVENTS_PER_PLATFORM // LINKS) == 0:
                link = _link(len(link_ids))
                link_ids.add(link["link_id"])
                producer.send(IDENTITY_TOPIC, key=link["kuaishou_user_id"].encode(), value=_encode(link))
            if i % (INVALID_EVERY // 2) == INVALID_EVERY // 4:
                kind, topic, key, value, error_class = next(invalid_messages)
                future = producer.send(topic, key=key, value=value)
                invalid_futures.append((future, kind, key, value, error_class))
        producer.flush(timeout=120)
        invalid = {}
        for future, kind, key, value, error_class in invalid_futures:
            meta = future.get(timeout=60)
            invalid[(meta.topic, meta.partition, meta.offset)] = (kind, key, value, error_class)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=fresh_topics.bootstrap_servers)
    try:
        partitions = [TopicPartition(t, p) for t in SOURCE_TOPICS for p in sorted(consumer.partitions_for_topic(t))]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    end_offsets = {(tp.topic, tp.partition): ends[tp] for tp in partitions}
    assert sum(end_offsets.values()) == len(event_ids) + len(link_ids) + len(invalid)
    assert {kind for kind, *_ in invalid.values()} == {kind for kind, *_ in _invalid_kinds()}
    return Produced(event_ids, link_ids, invalid, end_offsets, fresh_topics)


# --------------------------------------------------------------------------------------------
# Running the loader
# --------------------------------------------------------------------------------------------
@dataclass
class LoaderHome:
    """One test's ENGAGEMENT_HOME and consumer group, and the loaders started in it."""

    home: Path
    group: str
    settings: Settings
    processes: list[subprocess.Popen] = field(default_factory=list)
    # A warehouse on object storage instead of the local default: its URI and what a loader
    # process needs to reach it.
    warehouse_uri: str = ""
    store_env: dict[str, str] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def store(self) -> Store:
        if self.warehouse_uri:
            return open_store(self.warehouse_uri, endpoint=self.store_env["ENGAGEMENT_S3_ENDPOINT"])
        return LocalStore(self.warehouse)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_") or k == "ENGAGEMENT_KAFKA_LIBS"}
        env.update(
            ENGAGEMENT_HOME=str(self.home),
            ENGAGEMENT_BOOTSTRAP_SERVERS=self.settings.bootstrap_servers,
            ENGAGEMENT_CONSUMER_GROUP=self.group,
            ENGAGEMENT_LOADER_BATCH_MAX_RECORDS=str(BATCH_RECORDS),
            ENGAGEMENT_LOADER_BATCH_MAX_SECONDS="2",
            PYTHONUNBUFFERED="1",
        )
        if self.warehouse_uri:
            env.update(ENGAGEMENT_WAREHOUSE_URI=self.warehouse_uri, **self.store_env)
        return env

    def start(self, *, until_idle: bool = True, **env: str) -> subprocess.Popen:
        """Start ``engagement load`` (``env``: settings of this loader only, e.g. its batch bounds)."""
        command = [sys.executable, "-m", "engagement.cli", "load"]
        if until_idle:
            command += ["--until-idle", "--idle-seconds", "2"]
        log = open(self.home / f"loader-{len(self.processes)}.log", "wb")
        process = subprocess.Popen(command, cwd=REPO, env={**self.env(), **env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        """The loaders' logs (idle status lines left out) and where the commit log has holes."""

        def lines(path: Path) -> list[str]:
            return [line for line in path.read_text(errors="replace").splitlines() if " (0/s) " not in line][-60:]

        logs = "\n".join(f"--- {path.name} ---\n" + "\n".join(lines(path)) for path in sorted(self.home.glob("loader-*.log")))
        return f"{logs}\n--- commit log ---\n{self.commit_map()}"

    def commit_map(self) -> str:
        """Per partition: how many ranges are committed, up to which offset, and any gap."""
        out = []
        for topic in SOURCE_TOPICS:
            table = layout.bronze_table_for(topic, IDENTITY_TOPIC)
            for partition in range(3):
                done = loader_log.commits(self.store, table, topic, partition)
                gaps = [f"{a.last + 1}-{b.first - 1}" for a, b in zip(done, done[1:]) if b.first != a.last + 1]
                if done and done[0].first != 0:
                    gaps.insert(0, f"0-{done[0].first - 1}")
                end = done[-1].last if done else None
                out.append(f"{topic}[{partition}]: {len(done)} ranges up to {end}, gaps {gaps or 'none'}")
        return "\n".join(out)

    def wait(self, process: subprocess.Popen, timeout: float = LOADER_TIMEOUT_S) -> int:
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"loader did not finish within {timeout:.0f} s\n{self.logs()}")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def status(self, pid: int) -> dict:
        """The status file of the loader with this pid ({} before it wrote one)."""
        for path in (self.home / "loader").glob(f"*-{pid}.json"):
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:  # replaced atomically, but be safe while it is written
                return {}
        return {}

    def batches(self, process: subprocess.Popen) -> int:
        """Batches the loader ``process`` has published, from its status file (0 before any)."""
        return self.status(process.pid).get("batches", 0)

    def marked(self) -> int:
        """Offsets committed so far: the loader's durable progress."""
        return loader_log.covered_offsets(self.store)

    def partition_dirs(self) -> list[Path]:
        """Every directory the loader writes files into (data files and commits)."""
        dirs = []
        for topic in SOURCE_TOPICS:
            table = layout.bronze_table_for(topic, IDENTITY_TOPIC)
            for p in range(3):
                dirs += [
                    layout.partition_dir(self.warehouse, table, topic, p),
                    layout.partition_dir(self.warehouse, layout.QUARANTINE, topic, p),
                    self.warehouse / loader_log.commit_prefix(table, topic, p),
                ]
        return dirs

    def wait_until_publishing(self, what: str, process: subprocess.Popen, timeout: float = 30) -> bool:
        """Spin until the loader is caught in the act: ``"writing"`` a file (a temporary exists)
        or just done with a ``"marker"`` (a new range commit, its Kafka commit likely pending)."""
        dirs = self.partition_dirs()

        def names() -> set[str]:
            found = set()
            for directory in dirs:
                try:
                    found.update(f"{directory}/{e.name}" for e in os.scandir(directory))
                except FileNotFoundError:
                    pass
            return found

        before = names()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            now = names()
            if what == "writing" and any(n.endswith(".tmp") for n in now):
                return True
            if what == "marker" and any(f"/{loader_log.COMMITS}/" in n and n.endswith(".json") for n in now - before):
                return True
        return False

    def wait_for_progress(self, above: int, process: subprocess.Popen, timeout: float = 90) -> int:
        """Wait until the durable progress exceeds ``above`` while ``process`` still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            marked = self.marked()
            if marked > above:
                return marked
            if process.poll() is not None:
                pytest.fail(f"loader exited ({process.returncode}) before making progress\n{self.logs()}")
            time.sleep(0.05)
        pytest.fail(f"no progress beyond {above} offsets within {timeout:.0f} s\n{self.logs()}")


@pytest.fixture
def loader_home(produced: Produced, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LoaderHome]:
    home = LoaderHome(tmp_path / "home", f"crash-test-{request.node.name}-{os.getpid()}", produced.settings)
    home.home.mkdir()
    try:
        yield home
    finally:
        home.stop_all()


# --------------------------------------------------------------------------------------------
# What must hold afterwards
# --------------------------------------------------------------------------------------------
def _read_table(store: Store, table: str, columns: list[str]) -> list[dict]:
    rows: list[dict] = []
    for key in loader_log.committed_files(store, table):
        rows.extend(pq.read_table(io.BytesIO(store.get(key)), columns=columns).to_pylist())
    return rows


def _coordinates(rows: list[dict]) -> list[tuple[str, int, int]]:
    return [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows]


def assert_exactly_once(home: LoaderHome, produced: Produced) -> None:
    """Every input offset in exactly one row; bronze ids = produced ids; quarantine = invalid."""
    kafka = ["kafka_topic", "kafka_partition", "kafka_offset"]
    store = home.store
    events = _read_table(store, layout.BRONZE_EVENTS, ["event_id", *kafka])
    links = _read_table(store, layout.BRONZE_IDENTITY, ["link_id", *kafka])
    quarantine = _read_table(store, layout.QUARANTINE, [*kafka, "kafka_key", "value", "error_class"])

    coordinates = _coordinates(events) + _coordinates(links) + _coordinates(quarantine)
    doubled = [c for c, n in Counter(coordinates).items() if n > 1]
    assert not doubled, f"{len(doubled)} offsets are stored more than once, e.g. {doubled[:5]}"
    expected = produced.all_coordinates()
    missing = expected - set(coordinates)
    assert not missing, f"{len(missing)} offsets are in neither bronze nor quarantine, e.g. {sorted(missing)[:5]}"
    assert set(coordinates) == expected

    event_ids = Counter(r["event_id"] for r in events)
    assert max(event_ids.values()) == 1, "an event is in bronze twice"
    assert set(event_ids) == produced.event_ids
    link_ids = Counter(r["link_id"] for r in links)
    assert max(link_ids.values()) == 1
    assert set(link_ids) == produced.link_ids

    assert len(quarantine) == len(produced.invalid)
    for row in quarantine:
        kind, key, value, error_class = produced.invalid[(row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])]
        assert (row["kafka_key"], row["value"], row["error_class"]) == (key, value, error_class), kind

    # The commits tile each partition: contiguous, non-overlapping offset ranges from 0 to the
    # end; every data file belongs to a commit and no temporary file is left over.
    committed = set(loader_log.committed_files(store, layout.QUARANTINE))
    for (topic, partition), end in produced.end_offsets.items():
        table = layout.bronze_table_for(topic, IDENTITY_TOPIC)
        ranges = [c.offsets for c in loader_log.commits(store, table, topic, partition)]
        assert ranges and ranges[0].first == 0 and ranges[-1].last == end - 1, (topic, partition)
        for before, after in zip(ranges, ranges[1:]):
            assert after.first == before.last + 1, (topic, partition, before, after)
        committed |= set(loader_log.committed_files(store, table))
    stored = {k for t in (layout.BRONZE_EVENTS, layout.BRONZE_IDENTITY, layout.QUARANTINE) for k in store.list(t)}
    data = {k for k in stored if k.endswith(".parquet")}
    assert data == committed, f"data files without a commit: {sorted(data - committed)[:5]}"
    assert not [k for k in stored if k.endswith(".tmp")]


def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def bronze_progress(home: LoaderHome) -> dict[tuple[str, int], int]:
    """Per partition, the next offset after the last committed range."""
    out = {}
    for topic in SOURCE_TOPICS:
        table = layout.bronze_table_for(topic, IDENTITY_TOPIC)
        for partition in range(3):
            resume = loader_log.next_offset(home.store, table, topic, partition)
            if resume is not None:
                out[(topic, partition)] = resume
    return out


def _leftovers(home: LoaderHome, settings: Settings) -> list[str]:
    """What a kill interrupted: a file being written, a range without its commit, a range
    committed in bronze but not in Kafka."""
    found = []
    if list(home.warehouse.rglob("*.tmp")):
        found.append("temporary file")
    progress = bronze_progress(home)
    for topic in SOURCE_TOPICS:
        for table in (layout.bronze_table_for(topic, IDENTITY_TOPIC), layout.QUARANTINE):
            for partition in range(3):
                ranges = bronze.ranges_in(home.store, table, topic, partition)
                if any(r.first >= progress.get((topic, partition), 0) for r in ranges):
                    found.append("files without commit")
    found = sorted(set(found))
    committed = committed_offsets(settings, home.group)
    if any(committed.get(key, 0) < next_offset for key, next_offset in progress.items()):
        found.append("bronze ahead of commit")
    return found or ["between batches"]


def _load_to_the_end_and_stop(home: LoaderHome, produced: Produced, *, watch, processes) -> None:
    """Wait until every offset is committed (``watch`` still running), SIGTERM ``processes``
    (each must exit 0), then everything is there exactly once and Kafka's offsets are at the end."""
    home.wait_for_progress(produced.total - 1, watch, timeout=LOADER_TIMEOUT_S)
    for process in processes:
        process.send_signal(signal.SIGTERM)
        assert home.wait(process, timeout=60) == 0, home.logs()
    assert_exactly_once(home, produced)
    assert committed_offsets(produced.settings, home.group) == produced.end_offsets


def _finish(home: LoaderHome, produced: Produced) -> None:
    """A last loader with --until-idle must exit 0; then everything is there exactly once."""
    final = home.start(until_idle=True)
    assert home.wait(final) == 0, home.logs()
    assert_exactly_once(home, produced)
    assert committed_offsets(produced.settings, home.group) == produced.end_offsets


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_poison_messages_go_to_quarantine_and_dead_letters_and_the_loader_keeps_going(
    loader_home: LoaderHome, produced: Produced
) -> None:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=produced.settings.bootstrap_servers, enable_auto_commit=False)
    try:
        dead_partitions = [TopicPartition(DEADLETTER_TOPIC, p) for p in sorted(consumer.partitions_for_topic(DEADLETTER_TOPIC))]
        before = consumer.end_offsets(dead_partitions)  # other tests' dead letters come before these

        loader = loader_home.start(until_idle=True)
        assert loader_home.wait(loader) == 0, loader_home.logs()
        assert_exactly_once(loader_home, produced)

        after = consumer.end_offsets(dead_partitions)
        consumer.assign(dead_partitions)
        for tp in dead_partitions:
            consumer.seek(tp, before[tp])
        letters = []
        deadline = time.monotonic() + 60
        while len(letters) < sum(after[tp] - before[tp] for tp in dead_partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                letters.extend(r for r in records if r.offset < after[TopicPartition(r.topic, r.partition)])
    finally:
        consumer.close()

    # One uninterrupted run: exactly one dead letter per invalid message, with the original key
    # and bytes and the source and error in headers.
    assert len(letters) == len(produced.invalid)
    seen = {}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        source = (
            headers[ERROR_HEADER_PREFIX + "topic"],
            int(headers[ERROR_HEADER_PREFIX + "partition"]),
            int(headers[ERROR_HEADER_PREFIX + "offset"]),
        )
        assert source not in seen
        seen[source] = letter
        kind, key, value, error_class = produced.invalid[source]
        assert (letter.key, letter.value) == (key, value), kind
        assert headers[ERROR_HEADER_PREFIX + "class"] == error_class, kind
        assert headers[ERROR_HEADER_PREFIX + "message"], kind
    assert set(seen) == set(produced.invalid)

    # Every kind made it, each with its own error class.
    kinds = Counter(kind for kind, *_ in produced.invalid.values())
    assert len(kinds) == INVALID_KINDS and min(kinds.values()) >= 5
    messages = {r["error_class"] for r in _read_table(loader_home.store, layout.QUARANTINE, ["error_class"])}
    assert messages == {TOO_LARGE, BAD_ENCODING, BAD_JSON, NOT_OBJECT, WRONG_TYPE, BAD_VALUE, TOPIC_MISMATCH, MISSING_FIELD}


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    loader_home: LoaderHome, produced: Produced, spark
) -> None:
    rng = random.Random(20260301)
    marked = 0
    kills = 0
    states = Counter()  # what the kills left behind, to see that they hit different moments
    while kills < 6:
        loader = loader_home.start(until_idle=True)
        marked = loader_home.wait_for_progress(marked, loader)
        # Anywhere: polling, sending dead letters, writing a file, committing; and twice each
        # caught while writing a file and right after a bronze marker (before its commit).
        moment = ("random", "writing", "marker")[kills % 3]
        if moment == "random":
            # Short enough that six kills never outrun 200k events at ~45k events/s.
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            loader_home.wait_until_publishing(moment, loader)
        if loader.poll() is not None:
            pytest.fail(f"the loader finished after {kills} kills; the test needs more data\n{loader_home.logs()}")
        loader.send_signal(signal.SIGKILL)
        loader.wait()
        kills += 1
        marked = loader_home.marked()
        assert marked < produced.total
        states.update(_leftovers(loader_home, produced.settings))
    print(f"after {kills} kills: {dict(states)}")
    _finish(loader_home, produced)

    # Silver, the second line of defence, deduplicates by event_id even if bronze had a copy.
    from jobs.silver import first_copies
    from jobs.storage import read_bronze

    bronze_events = read_bronze(spark, loader_home.store, layout.BRONZE_EVENTS)
    silver = first_copies(bronze_events.unionByName(bronze_events.limit(1000)), timezone="Asia/Shanghai")
    assert silver.count() == len(produced.event_ids)
    assert silver.select("event_id").distinct().count() == len(produced.event_ids)


def test_on_object_storage_sigkill_loses_and_doubles_nothing(
    produced: Produced, tmp_path: Path, object_store, request: pytest.FixtureRequest
) -> None:
    """The same guarantees with the warehouse on a real S3-compatible server: data files are
    single PUTs, a range's commit is a PUT with If-None-Match, recovery lists and deletes."""
    home = LoaderHome(
        tmp_path / "home",
        f"crash-test-{request.node.name}-{os.getpid()}",
        produced.settings,
        warehouse_uri=f"s3://engagement/{request.node.name}-{os.getpid()}",
        store_env=object_store.environment(),
    )
    home.home.mkdir()
    rng = random.Random(20261123)
    try:
        for kills in range(3):
            loader = home.start(until_idle=True)
            home.wait_for_progress(home.marked(), loader)
            time.sleep(rng.uniform(0.0, 0.5))
            if loader.poll() is not None:
                pytest.fail(f"the loader finished after {kills} kills; the test needs more data\n{home.logs()}")
            loader.send_signal(signal.SIGKILL)
            loader.wait()
            assert home.marked() < produced.total
        _finish(home, produced)
        assert not home.warehouse.exists(), "the loader wrote to the local folder instead of object storage"
    finally:
        home.stop_all()


def test_broker_restart_mid_load(loader_home: LoaderHome, produced: Produced) -> None:
    loader = loader_home.start(until_idle=True)
    loader_home.wait_for_progress(produced.total // 5, loader)
    assert broker.stop(produced.settings)
    try:
        time.sleep(4)
        assert loader.poll() is None, f"the loader died with the broker\n{loader_home.logs()}"
    finally:
        broker.start(produced.settings, timeout=120)
    assert loader_home.wait(loader) == 0, loader_home.logs()
    assert_exactly_once(loader_home, produced)
    assert committed_offsets(produced.settings, loader_home.group) == produced.end_offsets


def test_sigterm_while_the_broker_is_down_exits_cleanly(loader_home: LoaderHome, produced: Produced) -> None:
    # With the broker gone the loader is stuck retrying dead letters or polling; SIGTERM must
    # still get it out promptly with exit 0, leaving only whole, marked ranges behind.
    loader = loader_home.start(until_idle=False)
    loader_home.wait_for_progress(produced.total // 10, loader)
    assert broker.stop(produced.settings)
    try:
        time.sleep(3)
        loader.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert loader_home.wait(loader, timeout=60) == 0, loader_home.logs()
        assert time.monotonic() - started < 30, "SIGTERM took too long with the broker down"
    finally:
        broker.start(produced.settings, timeout=120)
    _finish(loader_home, produced)


def test_two_loaders_in_one_group_and_one_stops_half_way(loader_home: LoaderHome, produced: Produced) -> None:
    # Both run as services (no --until-idle: an idle-exiting loader may finish its own half
    # before the other leaves). One leaves part-way; the other must take over and finish alone.
    leaving = loader_home.start(until_idle=False)
    staying = loader_home.start(until_idle=False)
    # Leave only once the group is really shared (both have published) and work remains.
    deadline = time.monotonic() + 90
    while not (loader_home.batches(leaving) > 0 and loader_home.batches(staying) > 0):
        assert leaving.poll() is None and staying.poll() is None, f"a loader exited\n{loader_home.logs()}"
        assert time.monotonic() < deadline, f"the two loaders never both published\n{loader_home.logs()}"
        time.sleep(0.05)
    assert loader_home.marked() < produced.total, "everything was loaded before the group was shared"
    leaving.send_signal(signal.SIGTERM)
    assert loader_home.wait(leaving, timeout=60) == 0, loader_home.logs()
    loader_home.wait_for_progress(produced.total - 1, staying, timeout=LOADER_TIMEOUT_S)
    staying.send_signal(signal.SIGTERM)
    assert loader_home.wait(staying, timeout=60) == 0, loader_home.logs()
    assert_exactly_once(loader_home, produced)
    assert committed_offsets(produced.settings, loader_home.group) == produced.end_offsets
    # ... and the one that stayed took over every partition when the other left.
    assignments = [line for line in (loader_home.home / "loader-1.log").read_text().splitlines() if "partitions assigned:" in line]
    assert assignments[-1].count("[") == len(produced.end_offsets), assignments


def test_a_stalled_loader_is_evicted_writes_nothing_it_lost_and_rejoins(
    loader_home: LoaderHome, produced: Produced, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short max.poll.interval.ms, and a stall longer than it and the session timeout (10 s):
    # SIGSTOP freezes the whole process, heartbeat thread included, so the group evicts it.
    monkeypatch.setenv("ENGAGEMENT_LOADER_MAX_POLL_INTERVAL_MS", "6000")
    stalled = loader_home.start(until_idle=False)
    loader_home.wait_for_progress(produced.total // 10, stalled)
    # Freeze it in the worst place: inside its publish step, after the group coordinator
    # confirmed its membership, while it writes a file. The other loader's recovery removes the
    # half-written file; if the stalled one got further (a file renamed, its commit not yet
    # created), the other commits the range first and the stalled one's commit is refused.
    assert loader_home.wait_until_publishing("writing", stalled), "never caught the loader writing a file"
    stalled.send_signal(signal.SIGSTOP)
    try:
        frozen_at = loader_home.marked()
        other = loader_home.start(until_idle=False)
        # The other member gets every partition once the stalled one is evicted, and loads on.
        loader_home.wait_for_progress(frozen_at + 2 * BATCH_RECORDS, other, timeout=120)
    finally:
        stalled.send_signal(signal.SIGCONT)
    # Thawed, the stalled loader finds it lost its partitions: it must neither die nor write
    # the batch it held for them; it rejoins the group and shares the rest of the work.
    time.sleep(3)
    assert stalled.poll() is None, f"the stalled loader exited after the stall\n{loader_home.logs()}"
    _load_to_the_end_and_stop(loader_home, produced, watch=other, processes=(stalled, other))
    log = (loader_home.home / "loader-0.log").read_text()
    assert log.count("partitions assigned:") >= 2, "the stalled loader never rejoined the group"


def test_a_partition_kept_through_a_rebalance_is_read_again_from_what_bronze_holds(
    loader_home: LoaderHome, produced: Produced
) -> None:
    # One loader holds everything it reads in one batch (it publishes only once caught up);
    # a second loader joins meanwhile. The rebalance revokes every partition and gives the first
    # loader some of them back: the records it held for those were dropped with the batch and
    # must be read again, although the consumer keeps its position for a partition it keeps
    # and nothing of the partition is committed yet (no commit log to seek to).
    hold_everything = {
        "ENGAGEMENT_LOADER_BATCH_MAX_RECORDS": "10000000",
        "ENGAGEMENT_LOADER_BATCH_MAX_BYTES": str(2**30),
        "ENGAGEMENT_LOADER_BATCH_MAX_SECONDS": "300",
    }
    first = loader_home.start(until_idle=False, **hold_everything)
    log = loader_home.home / "loader-0.log"
    deadline = time.monotonic() + 60
    while "partitions assigned: engagement" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and first.poll() is None, loader_home.logs()
        time.sleep(0.1)
    time.sleep(2)  # it reads (and holds) part of the backlog
    assert loader_home.marked() == 0, "the first loader published before the second one joined"
    second = loader_home.start(until_idle=False, **hold_everything)
    _load_to_the_end_and_stop(loader_home, produced, watch=first, processes=(first, second))
    assert log.read_text().count("partitions assigned:") >= 2, "no rebalance happened"


def test_sigterm_commits_exactly_what_bronze_holds(loader_home: LoaderHome, produced: Produced) -> None:
    rng = random.Random(7)
    marked = 0
    for _ in range(2):
        loader = loader_home.start(until_idle=False)
        marked = loader_home.wait_for_progress(marked + produced.total // 8, loader)
        time.sleep(rng.uniform(0.0, 0.5))
        loader.send_signal(signal.SIGTERM)
        assert loader_home.wait(loader, timeout=60) == 0, loader_home.logs()
        marked = loader_home.marked()
        assert marked < produced.total
        assert committed_offsets(produced.settings, loader_home.group) == bronze_progress(loader_home)
    _finish(loader_home, produced)


def test_status_shows_lag_rate_dead_letters_and_last_commit(loader_home: LoaderHome, produced: Produced) -> None:
    from engagement.status import pipeline_status, render_status

    loader = loader_home.start(until_idle=True)
    assert loader_home.wait(loader) == 0, loader_home.logs()
    settings = Settings(
        home=loader_home.home,
        bootstrap_servers=produced.settings.bootstrap_servers,
        kafka_controller_port=produced.settings.kafka_controller_port,
        consumer_group=loader_home.group,
    )
    status = pipeline_status(settings)
    assert "partitions_error" not in status, status.get("partitions_error")
    lag = status["partitions"]
    for (topic, partition), end in produced.end_offsets.items():
        assert lag[f"{topic}[{partition}]"] == {"end": end, "committed": end, "lag": 0}
    latest = status["loaders"][0]
    assert latest["pid"] == loader.pid and not latest["running"]
    assert latest["dead_lettered"] == len(produced.invalid)
    assert latest["consumed"] == produced.total
    assert latest["last_commit"]
    text = render_status(status)
    assert "total lag: 0" in text and f"dead-lettered {len(produced.invalid):,}" in text
    assert "dead letters on engagement.deadletter:" in text
    # The loader logs the same figures periodically and when it stops.
    log = (loader_home.home / "loader-0.log").read_text()
    assert "lag=" in log and "dead_lettered=" in log


# --------------------------------------------------------------------------------------------
# Several workers (engagement load --workers N)
# --------------------------------------------------------------------------------------------
def _workers_of(parent: subprocess.Popen, count: int, timeout: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while True:
        children = psutil.Process(parent.pid).children()
        if len(children) == count:
            return children
        assert parent.poll() is None and time.monotonic() < deadline, f"{len(children)} workers, not {count}"
        time.sleep(0.05)


def test_two_workers_share_the_group_and_load_everything_exactly_once(loader_home: LoaderHome, produced: Produced) -> None:
    parent = loader_home.start(until_idle=True, ENGAGEMENT_LOADER_WORKERS="2")
    pids = [worker.pid for worker in _workers_of(parent, 2)]
    assert loader_home.wait(parent) == 0, loader_home.logs()
    assert_exactly_once(loader_home, produced)
    assert committed_offsets(produced.settings, loader_home.group) == produced.end_offsets
    # Both workers published (the group was shared), and the parent's summary adds theirs up.
    published = {pid: loader_home.status(pid)["bronze_rows"] for pid in pids}
    assert all(rows > 0 for rows in published.values()), published
    valid = produced.total - len(produced.invalid)
    assert sum(published.values()) == valid
    # (Consumed counts the records a worker dropped with a revoked partition and another read again.)
    summary = (loader_home.home / "loader-0.log").read_text().splitlines()[-1]
    assert summary.endswith(f"messages with 2 workers: {valid:,} to bronze, {len(produced.invalid):,} to quarantine "
                            f"({len(produced.invalid):,} dead-lettered)"), summary
    assert int(summary.split()[1].replace(",", "")) >= produced.total, summary


def test_sigterm_to_the_workers_parent_stops_each_after_its_commit(loader_home: LoaderHome, produced: Produced) -> None:
    parent = loader_home.start(until_idle=False, ENGAGEMENT_LOADER_WORKERS="2")
    workers = _workers_of(parent, 2)
    loader_home.wait_for_progress(produced.total // 4, parent)
    parent.send_signal(signal.SIGTERM)
    assert loader_home.wait(parent, timeout=60) == 0, loader_home.logs()
    assert not psutil.wait_procs(workers, timeout=5)[1], "a worker outlived its parent"
    assert (loader_home.home / "loader-0.log").read_text().count("loader stopped after") == 2
    assert loader_home.marked() < produced.total
    assert committed_offsets(produced.settings, loader_home.group) == bronze_progress(loader_home)
    _finish(loader_home, produced)


def test_a_worker_killed_fails_the_loader_and_its_parent_killed_stops_the_workers(
    loader_home: LoaderHome, produced: Produced
) -> None:
    # A worker dies (SIGKILL): the parent stops the other one and fails with a message that says so.
    parent = loader_home.start(until_idle=False, ENGAGEMENT_LOADER_WORKERS="2")
    first, second = _workers_of(parent, 2)
    loader_home.wait_for_progress(produced.total // 8, parent)
    first.kill()
    assert loader_home.wait(parent, timeout=60) == 1, loader_home.logs()
    assert not psutil.wait_procs([second], timeout=10)[1]
    log = (loader_home.home / "loader-0.log").read_text()
    assert f"loader worker {first.pid} exited with -9" in log
    assert log.count("loader stopped after") == 1, log  # the other one stopped (SIGTERM), the way it does
    # The parent dies (SIGKILL): its workers get SIGTERM from the kernel and exit by themselves.
    parent = loader_home.start(until_idle=False, ENGAGEMENT_LOADER_WORKERS="2")
    workers = _workers_of(parent, 2)
    loader_home.wait_for_progress(loader_home.marked() + produced.total // 8, parent)
    parent.kill()
    parent.wait()
    assert not psutil.wait_procs(workers, timeout=60)[1], "workers outlived their parent"
    log = (loader_home.home / "loader-1.log").read_text()
    assert log.count("loader stopped after") == 2, log  # each published its batch and committed
    _finish(loader_home, produced)
