"""The loader on a 3-node KRaft cluster (replication factor 3, min.insync.replicas 2, acks=all):
the leader of its partitions is SIGKILLed mid-load and restarted, and nothing is lost or doubled.

Reuses the crash tests' data set and checks (tests/test_loader_crash.py) on a cluster of its own.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from test_loader_crash import LoaderHome, Produced, assert_exactly_once, committed_offsets, loader_home, produced  # noqa: F401

from core.contract import KUAISHOU_TOPIC
from streaming import broker
from streaming.topics import create_contract_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    settings = broker.settings_on_free_ports(tmp_path_factory.mktemp("kafka-cluster"), partitions=3, nodes=3)
    broker.start(settings, timeout=180)
    try:
        yield settings
    finally:
        broker.stop(settings)


@pytest.fixture(scope="module")
def fresh_topics(cluster):
    """The contract's topics on the cluster (what the crash tests' ``produced`` fixture writes to)."""
    outcomes = create_contract_topics(cluster)
    assert set(outcomes.values()) == {"created"}
    return cluster


def _leaders(settings, topic: str) -> dict[int, int]:
    """Partition -> node id of its leader; also checks three replicas and min.insync.replicas=2."""
    from kafka.admin import ConfigResource, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        (described,) = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource("TOPIC", topic, configs=["min.insync.replicas"])])
    finally:
        admin.close()
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
    assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])
    return {p["partition_index"]: p["leader_id"] for p in described["partitions"]}


def _leader_now(settings) -> int | None:
    """Partition 0's leader, or None while the admin client's request hit the dead node."""
    from kafka.errors import KafkaError

    try:
        return _leaders(settings, KUAISHOU_TOPIC)[0]
    except KafkaError:
        return None


def test_cluster_runs_three_nodes_with_replicated_topics(fresh_topics):
    status = broker.status(fresh_topics)
    assert status.healthy and status.message.startswith("Kafka cluster of 3 nodes"), status.message
    assert all(pid is not None for pid in broker.node_pids(fresh_topics).values())
    assert set(_leaders(fresh_topics, KUAISHOU_TOPIC).values()) <= {1, 2, 3}


def test_sigkill_of_the_leader_mid_load_loses_and_doubles_nothing(loader_home: LoaderHome, produced: Produced) -> None:  # noqa: F811
    settings = produced.settings
    loader = loader_home.start(until_idle=True)
    loader_home.wait_for_progress(produced.total // 5, loader)
    leader = _leaders(settings, KUAISHOU_TOPIC)[0]
    os.kill(broker.node_pids(settings)[leader], signal.SIGKILL)
    # The controllers notice a dead broker once its session (broker.session.timeout.ms, 9 s)
    # expires; then another in-sync replica leads.
    deadline = time.monotonic() + 60
    while _leader_now(settings) in (leader, None):
        assert time.monotonic() < deadline, "no other replica took over"
        time.sleep(1)
    assert loader.poll() is None, f"the loader stopped when a node died\n{loader_home.logs()}"
    broker.start(settings, timeout=120)  # starts the killed node again; the others are left alone
    assert broker.status(settings).healthy
    assert loader_home.wait(loader) == 0, loader_home.logs()
    assert_exactly_once(loader_home, produced)
    assert committed_offsets(settings, loader_home.group) == produced.end_offsets
