"""``kafka_broker``: one real single-node Kafka broker (KRaft) for the whole test session.

Tests that use it are integration tests; mark them so ``-m "not integration"`` skips them::

    pytestmark = pytest.mark.integration

    def test_something(kafka_broker):          # kafka_broker is a Settings
        produce(kafka_broker.bootstrap_servers, ...)

The broker gets free ports and a temporary ENGAGEMENT_HOME, so it never touches a developer's
own broker or data; the jars come from the shared cache (streaming.broker.libs_dir), so only
the first session on a machine fetches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from streaming import broker
from streaming.topics import create_topics

TEST_PARTITIONS = 3


def broker_settings(home: Path) -> Settings:
    """Settings for a test broker in ``home`` on fresh free ports; other fields at defaults."""
    return broker.settings_on_free_ports(home, partitions=TEST_PARTITIONS)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running broker with the contract's topics (3 partitions each); yields its Settings."""
    settings = broker_settings(tmp_path_factory.mktemp("engagement-home"))
    broker.install(settings, quiet=True)
    broker.start(settings, timeout=120)  # generous: the machine is shared with Spark tests
    try:
        create_topics(settings.bootstrap_servers, partitions=TEST_PARTITIONS)
        yield settings
    finally:
        broker.stop(settings)


def recreate_topics(settings: Settings) -> None:
    """Delete the contract's topics, wait until they are gone, and create them again."""
    import time

    from kafka import KafkaAdminClient
    from kafka.errors import UnknownTopicOrPartitionError

    from streaming.topics import CONTRACT_TOPICS

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        existing = [t for t in CONTRACT_TOPICS if t in admin.list_topics()]
        if existing:
            try:
                admin.delete_topics(existing, timeout_ms=30_000)
            except UnknownTopicOrPartitionError:
                pass
        deadline = time.monotonic() + 60
        while any(t in admin.list_topics() for t in CONTRACT_TOPICS):
            if time.monotonic() > deadline:
                raise RuntimeError("topics were not deleted within 60 s")
            time.sleep(0.5)
    finally:
        admin.close()
    create_topics(settings.bootstrap_servers, partitions=TEST_PARTITIONS)


@pytest.fixture(scope="module")
def fresh_topics(kafka_broker: Settings) -> Settings:
    """Delete and re-create the contract's topics, so a test module starts from empty logs.

    Integration modules share one broker; without this, one module's messages would show up in
    the next module's bronze.
    """
    recreate_topics(kafka_broker)
    return kafka_broker
