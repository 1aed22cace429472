"""The pipeline's steps on real Spark and GX, over bronze files written the way the loader does:
silver typing and dedup, and quality gates that stop publication."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime, timezone

import pyarrow as pa
import pytest

from core import layout, silver_log
from core.contract import KUAISHOU_TOPIC, WECHAT_TOPIC
from core.layout import published_dates
from core.settings import Settings
from core.storage import LocalStore
from engagement import pipeline
from engagement.incremental import silver_events
from engagement.publish import staged
from engagement.query import run_query
from streaming import bronze
from streaming.loader import route

INGEST = datetime(2026, 3, 20, tzinfo=timezone.utc)
AS_OF = date(2026, 3, 12)


def _event(event_id, event_type, platform, user_id, event_time, **fields):
    return {
        "event_id": event_id,
        "schema_version": 1,
        "event_type": event_type,
        "platform": platform,
        "user_id": user_id,
        "event_time": event_time,
        **fields,
    }


EVENTS = [
    # A WeChat invitation at local 2026-03-01 23:59:30 written in UTC ("Z") ...
    _event("w-1", "share", "wechat", "o-inviter", "2026-03-01T15:59:30Z", content_id="card-1", group_id="wg", target_platform="wechat"),
    # ... and the join it brought, at local 00:00:10 the next day, written with +08:00.
    _event("w-2", "join", "wechat", "o-new", "2026-03-02T00:00:10+08:00", group_id="wg", channel="invite", inviter_user_id="o-inviter"),
    # A second invitation nobody answered.
    _event("w-3", "share", "wechat", "o-inviter", "2026-03-03T09:00:00+08:00", content_id="card-2", group_id="wg", target_platform="wechat"),
    # The new member is active on local day 1 (2026-03-03) ... written in UTC on 03-02.
    _event("w-4", "like", "wechat", "o-new", "2026-03-02T16:30:00Z", content_id="article-1"),
    # RFC 3339 allows lower-case "t" and "z".
    _event("k-1", "like", "kuaishou", "ks-1", "2026-03-01t04:00:00z", content_id="v-1", group_id="kg"),
]


def _write_bronze(settings: Settings, rows_by_topic: dict[str, list[bytes]]) -> None:
    for topic, values in rows_by_topic.items():
        routed = [route(topic, 0, offset, None, value, None, INGEST) for offset, value in enumerate(values)]
        good = [r.row for r in routed if r.rejection is None]
        bad = [r.row for r in routed if r.rejection is not None]
        bronze.publish_range(
            LocalStore(settings.warehouse), layout.BRONZE_EVENTS, topic, 0, layout.OffsetRange(0, len(values) - 1),
            pa.Table.from_pylist(good, schema=bronze.BRONZE_EVENTS_SCHEMA),
            pa.Table.from_pylist(bad, schema=bronze.QUARANTINE_SCHEMA),
        )  # fmt: skip


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, spark_shuffle_partitions=2)


@pytest.fixture()
def loaded(settings) -> Settings:
    values = {KUAISHOU_TOPIC: [], WECHAT_TOPIC: []}
    for event in EVENTS:
        values[KUAISHOU_TOPIC if event["platform"] == "kuaishou" else WECHAT_TOPIC].append(json.dumps(event).encode())
    # A redelivery of the join: it must count once.
    values[WECHAT_TOPIC].append(values[WECHAT_TOPIC][1])
    _write_bronze(settings, values)
    return settings


def test_daily_run_types_dedups_and_publishes(spark, loaded):
    result = pipeline.run_daily(spark, loaded, AS_OF)
    assert result.silver_counts["events"] == 5  # 6 arrived, one a redelivery

    events = silver_events(spark, LocalStore(loaded.warehouse))
    dates = {r["event_id"]: r["event_date"].isoformat() for r in events.collect()}
    assert dates == {"w-1": "2026-03-01", "w-2": "2026-03-02", "w-3": "2026-03-03", "w-4": "2026-03-03", "k-1": "2026-03-01"}
    assert published_dates(loaded.warehouse) == [AS_OF]

    # Invitation of 03-01 converted (join 10 s later, across local midnight); that of 03-03 did not.
    rows = run_query(
        loaded.warehouse,
        "SELECT cohort_date, attempts, conversions FROM join_conversion WHERE funnel = 'invite' ORDER BY cohort_date",
    ).rows
    assert rows == [(date(2026, 3, 1), 1, 1), (date(2026, 3, 3), 1, 0)]
    retention = run_query(
        loaded.warehouse,
        "SELECT cohort_date, day_offset, cohort_users, retained_users FROM retention_cohorts WHERE platform = 'wechat' ORDER BY day_offset",
    ).rows
    assert retention == [(date(2026, 3, 2), 1, 1, 1), (date(2026, 3, 2), 7, 1, 0)]


def test_corrupt_gold_fails_the_gate_and_publishes_nothing(spark, loaded):
    from expectations.runner import QualityGateFailed

    pipeline.validate_bronze(spark, loaded, AS_OF)
    pipeline.build_silver(spark, loaded, AS_OF)
    pipeline.build_gold(spark, loaded, AS_OF)
    # Corrupt the staged join_conversion: a rate above 1.
    (key,) = staged(LocalStore(loaded.warehouse), AS_OF)["tables"]["join_conversion"]
    path = LocalStore(loaded.warehouse).path(key)
    bad = spark.read.parquet(str(path)).withColumn("conversion_rate", pipeline_rate(1.5)).cache()
    bad.count()
    bad.coalesce(1).write.mode("overwrite").parquet(str(path.parent))
    (rewritten,) = path.parent.glob("*.parquet")
    rewritten.rename(path)  # the staged build names this file
    with pytest.raises(QualityGateFailed, match="conversion_rate"):
        pipeline.validate_gold(spark, loaded, AS_OF)
    assert published_dates(loaded.warehouse) == []


def test_a_silver_version_that_failed_its_gate_is_checked_again_by_the_next_run(spark, loaded):
    """A later run adds events to other dates only; its gate must still see the failed ones."""
    import pyarrow.parquet as pq

    from expectations.runner import QualityGateFailed

    store = LocalStore(loaded.warehouse)
    pipeline.validate_bronze(spark, loaded, AS_OF)
    pipeline.build_silver(spark, loaded, AS_OF)
    # What a deduplication bug would leave: every event of 2026-03-01 twice.
    for key in silver_log.head(store).events["2026-03-01"]["files"]:
        rows = pq.read_table(store.path(key))
        pq.write_table(pa.concat_tables([rows, rows]), store.path(key))
        store.path(key).with_name(f".{store.path(key).name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old
    with pytest.raises(QualityGateFailed, match="event_id"):
        pipeline.validate_silver(spark, loaded, AS_OF)

    # The next day brings one event, dated 2026-03-05, and nothing for 2026-03-01.
    late = _event("k-2", "like", "kuaishou", "ks-2", "2026-03-05T10:00:00+08:00", content_id="v-2")
    row = route(KUAISHOU_TOPIC, 1, 0, None, json.dumps(late).encode(), None, INGEST).row
    bronze.publish_range(
        store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 1, layout.OffsetRange(0, 0),
        pa.Table.from_pylist([row], schema=bronze.BRONZE_EVENTS_SCHEMA),
        pa.Table.from_pylist([], schema=bronze.QUARANTINE_SCHEMA),
    )  # fmt: skip
    next_day = date(2026, 3, 13)
    with pytest.raises(QualityGateFailed, match="event_id"):
        pipeline.run_daily(spark, loaded, next_day)
    assert set(silver_log.head(store).changes.dates) == {date(2026, 3, 5)}  # the run's own dates
    assert published_dates(loaded.warehouse) == []


def pipeline_rate(value: float):
    from pyspark.sql import functions as F

    return F.lit(value).cast("double")


def test_null_in_required_bronze_column_fails_the_gate(spark, settings):
    from expectations.runner import QualityGateFailed

    row = route(KUAISHOU_TOPIC, 0, 0, None, json.dumps(EVENTS[-1]).encode(), None, INGEST).row
    row["event_id"] = None  # what a broken writer upstream of the contract would leave
    bronze.publish_range(
        LocalStore(settings.warehouse), layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0, layout.OffsetRange(0, 0),
        pa.Table.from_pylist([row], schema=bronze.BRONZE_EVENTS_SCHEMA),
        pa.Table.from_pylist([], schema=bronze.QUARANTINE_SCHEMA),
    )  # fmt: skip
    with pytest.raises(QualityGateFailed, match="event_id") as raised:
        pipeline.run_daily(spark, settings, AS_OF)
    assert published_dates(settings.warehouse) == []
    assert silver_log.head(LocalStore(settings.warehouse)) is None  # nothing reached silver

    # The gate wrote Great Expectations Data Docs; the failure and `engagement status` name them.
    from engagement.status import pipeline_status, render_status

    index = settings.home / "data_docs" / "index.html"
    assert f"Every expectation and its result: {index}" in str(raised.value)
    (page,) = (settings.home / "data_docs" / "validations" / "bronze" / "events").rglob("*.html")
    text = " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())
    assert "Status: Failed" in text and "Unsuccessful Expectations 1" in text and "event_id" in text, text[-3000:]
    assert f"Data Docs of its gates: {index}" in render_status(pipeline_status(settings))


def test_rerun_of_the_same_date_gives_the_same_rows(spark, loaded):
    pipeline.run_daily(spark, loaded, AS_OF)
    first = run_query(loaded.warehouse, "SELECT * FROM retention_cohorts ORDER BY ALL").rows
    pipeline.run_daily(spark, replace(loaded), AS_OF)
    assert run_query(loaded.warehouse, "SELECT * FROM retention_cohorts ORDER BY ALL").rows == first
