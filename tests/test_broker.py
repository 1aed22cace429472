"""The local broker against a real Apache Kafka JVM: start, status, stop, ports, topics.

Most tests share the session broker (kafka_fixture.kafka_broker). One test runs a second
broker of its own, because stopping the shared one would pull it from under other tests;
it starts that JVM twice (start, then a restart on the same data). The port and pid-file
tests never launch a JVM.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka_fixture import TEST_PARTITIONS, broker_settings

from core.settings import Settings
from streaming import broker
from streaming.broker import BrokerError
from streaming.topics import CONTRACT_TOPICS, create_topics, describe_topics

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------
# The shared session broker
# --------------------------------------------------------------------------------------------
def test_install_is_a_no_op_once_the_jars_are_there(kafka_broker: Settings) -> None:
    started = time.monotonic()
    libs = broker.install(kafka_broker, quiet=True)

    assert time.monotonic() - started < 1.0
    assert (libs / f"kafka_2.13-{broker.kafka_version()}.jar").is_file()


def test_status_of_a_running_broker(kafka_broker: Settings) -> None:
    status = broker.status(kafka_broker)

    assert status.running and status.healthy
    assert status.pid is not None and psutil.pid_exists(status.pid)
    assert status.bootstrap_servers == kafka_broker.bootstrap_servers
    assert status.version == broker.kafka_version()
    assert status.log_file.is_file()
    assert status.data_dir == (kafka_broker.kafka_dir / "data").resolve()
    assert f"pid {status.pid}" in status.message and "answering" in status.message


def test_start_is_idempotent(kafka_broker: Settings) -> None:
    before = broker.status(kafka_broker)

    again = broker.start(kafka_broker, timeout=30)

    assert again.pid == before.pid
    assert again.healthy
    assert again.cluster_id == before.cluster_id


def test_create_topics_is_idempotent(kafka_broker: Settings) -> None:
    # The fixture created them already.
    outcome = create_topics(kafka_broker.bootstrap_servers, partitions=TEST_PARTITIONS)

    assert outcome == {topic: "exists" for topic in CONTRACT_TOPICS}
    assert describe_topics(kafka_broker.bootstrap_servers) == {
        topic: TEST_PARTITIONS for topic in CONTRACT_TOPICS
    }


def test_existing_topics_with_fewer_partitions_are_reported_not_changed(
    kafka_broker: Settings,
) -> None:
    outcome = create_topics(kafka_broker.bootstrap_servers, partitions=TEST_PARTITIONS + 2)

    for topic in CONTRACT_TOPICS:
        assert outcome[topic].startswith(
            f"exists with {TEST_PARTITIONS} partitions, fewer than the {TEST_PARTITIONS + 2}"
        )
    assert set(describe_topics(kafka_broker.bootstrap_servers).values()) == {TEST_PARTITIONS}


def test_messages_over_64_kib_reach_consumers(kafka_broker: Settings) -> None:
    # The loader must receive oversized messages to dead-letter them (DESIGN.md section 3).
    topic = "test.broker.large-messages"  # not a contract topic: other tests count those
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
        )
    finally:
        admin.close()
    value = b"x" * (200 * 1024)

    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers, group_id=None)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                received += [record.value for record in records]
    finally:
        consumer.close()

    assert received == [value]


def test_status_does_not_claim_another_homes_broker(kafka_broker: Settings, tmp_path) -> None:
    # Same port, different home: the broker that answers is not this home's.
    other_home = Settings(
        home=tmp_path,
        bootstrap_servers=kafka_broker.bootstrap_servers,
        kafka_controller_port=kafka_broker.kafka_controller_port,
    )

    status = broker.status(other_home)

    assert not status.running and not status.healthy and status.pid is None
    assert "another Kafka broker" in status.message
    with pytest.raises(BrokerError, match=rf"Port {other_home.kafka_port} .* in use"):
        broker.start(other_home, timeout=10)


# --------------------------------------------------------------------------------------------
# A broker of its own: the whole life cycle
# --------------------------------------------------------------------------------------------
def test_life_cycle_start_status_stop_restart(tmp_path) -> None:
    settings = broker_settings(tmp_path)
    assert broker.stop(settings) is False
    before = broker.status(settings)
    assert not before.running and not before.healthy and before.pid is None

    try:
        started = broker.start(settings, timeout=120)
        assert started.running and started.healthy and started.pid is not None
        pid = started.pid
        create_topics(settings.bootstrap_servers, partitions=2)

        assert broker.stop(settings) is True

        assert not psutil.pid_exists(pid)
        after = broker.status(settings)
        assert not after.running and not after.healthy and after.pid is None
        assert "not running" in after.message
        assert not (settings.kafka_dir / "broker.pid").exists()
        assert broker.stop(settings) is False

        # A restart reuses the formatted storage: same cluster, topics still there.
        restarted = broker.start(settings, timeout=120)
        assert restarted.healthy and restarted.pid != pid
        assert restarted.cluster_id == started.cluster_id
        assert describe_topics(settings.bootstrap_servers) == {t: 2 for t in CONTRACT_TOPICS}
    finally:
        broker.stop(settings)
    assert not broker.status(settings).running


# --------------------------------------------------------------------------------------------
# No JVM: ports and pid files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("which", "variable"),
    [
        ("listener", "ENGAGEMENT_BOOTSTRAP_SERVERS"),
        ("controller", "ENGAGEMENT_KAFKA_CONTROLLER_PORT"),
    ],
)
def test_a_port_in_use_is_a_clear_error(tmp_path, which: str, variable: str) -> None:
    settings = broker_settings(tmp_path)
    port = settings.kafka_port if which == "listener" else settings.kafka_controller_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()

        with pytest.raises(BrokerError) as error:
            broker.start(settings, timeout=10)

    message = str(error.value)
    assert f"Port {port}" in message and "already in use" in message
    assert variable in message
    assert not broker.status(settings).running


def test_a_stale_pid_file_is_not_running(tmp_path) -> None:
    settings = broker_settings(tmp_path)
    pid_file = settings.kafka_dir / "broker.pid"
    pid_file.parent.mkdir(parents=True)
    # A live process that is not our broker (the pid was reused) ...
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        status = broker.status(settings)
        assert not status.running and status.pid is None
        assert broker.stop(settings) is False
        assert sleeper.poll() is None, "stop() must not signal a process that is not ours"
        assert not pid_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # ... and a process that is gone.
    pid_file.write_text(f"{sleeper.pid}\n")
    assert not broker.status(settings).running


def test_cluster_ids_never_start_with_a_dash():
    # kafka-storage reads "--cluster-id -abc" as a missing argument; ~1 in 64 random ids would.
    ids = [broker._new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)


def test_an_empty_libs_variable_means_the_shared_cache_not_the_working_directory(monkeypatch) -> None:
    # An empty ENGAGEMENT_KAFKA_LIBS (as a shell's `VAR= command` gives) once sent Maven's
    # download into the working directory.
    monkeypatch.setenv(broker.LIBS_ENV, "")
    monkeypatch.setenv("HOME", "/home/someone")
    assert broker.libs_dir() == Path(f"/home/someone/.cache/engagement/kafka-{broker.kafka_version()}/libs")
    monkeypatch.setenv(broker.LIBS_ENV, "/opt/kafka-jars")
    assert broker.libs_dir() == Path("/opt/kafka-jars")
