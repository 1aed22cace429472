"""A topic deleted and re-created under a loader that keeps its bronze: the loader must stop
with a clear error instead of filing new offsets under the names of old files."""

from __future__ import annotations

import json
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from kafka_fixture import recreate_topics
from test_cli_errors import assert_one_line_error, run_cli

from core import layout
from core.contract import KUAISHOU_TOPIC
from streaming.loader import Loader, LoaderError

pytestmark = pytest.mark.integration


def _likes(prefix: str, count: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "event_id": f"{prefix}-{i}",
                "schema_version": 1,
                "event_type": "like",
                "platform": "kuaishou",
                "user_id": "ks-1",
                "event_time": "2026-03-01T12:00:00Z",
                "content_id": "v-1",
            }
        ).encode()
        for i in range(count)
    ]


def _send(settings, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(KUAISHOU_TOPIC, key=b"ks-1", value=value, partition=0)
        producer.flush()
    finally:
        producer.close()


def _bronze_files(settings) -> dict[str, bytes]:
    directory = settings.warehouse / layout.BRONZE_EVENTS
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.parquet"))}


def test_loader_refuses_offsets_it_already_holds(fresh_topics, tmp_path):
    settings = replace(fresh_topics, home=tmp_path, consumer_group="recreated-topic")
    _send(settings, _likes("old", 30))
    Loader(settings, until_idle=True, idle_seconds=1).run()
    before = _bronze_files(settings)
    old_ids = {r["event_id"] for f in (settings.warehouse / layout.BRONZE_EVENTS).rglob("*.parquet") for r in pq.read_table(f).to_pylist()}
    assert len(old_ids) == 30

    recreate_topics(settings)
    _send(settings, _likes("new", 10))
    with pytest.raises(LoaderError, match="re-created"):
        Loader(settings, until_idle=True, idle_seconds=1).run()
    assert _bronze_files(settings) == before, "bronze changed after the topic was re-created"

    # What an operator sees from the CLI: one line that says what to do, exit code 1.
    done = run_cli(
        settings.home,
        "load", "--until-idle", "--idle-seconds", "1",
        env={"ENGAGEMENT_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "ENGAGEMENT_CONSUMER_GROUP": settings.consumer_group},
    )  # fmt: skip
    assert_one_line_error(done, "re-created", "Nothing was written", "Move ")
    assert _bronze_files(settings) == before
