"""Session-wide fixtures: one SparkSession (and, in kafka_fixture, one real broker) per run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    from jobs.session import build_spark

    session = build_spark(app_name="engagement-tests", shuffle_partitions=2, driver_memory="1g")
    yield session
    session.stop()
