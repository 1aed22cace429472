"""The whole chain on the real broker, real Spark, real GX and real Airflow:
generator -> Kafka -> loader -> bronze/quarantine -> engagement_daily (dag.test) -> gold.

Checks: every message produced is in exactly one of bronze or quarantine; redeliveries count
once in silver; the conversion and retention the pipeline reports match the generator's rates
within stated tolerances.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date, timedelta

import pyarrow.parquet as pq
import pytest

from core import layout
from core.contract import DEADLETTER_TOPIC, IDENTITY_TOPIC, KUAISHOU_TOPIC, WECHAT_TOPIC
from engagement.query import run_query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 10, 1)
DAYS = 35
AS_OF = START + timedelta(days=DAYS - 1)

# Tolerances, in absolute rate points. The generator draws each attempt independently, so with
# n attempts the standard error is sqrt(p(1-p)/n); these bounds are > 4 standard errors at the
# sizes below, and still tight enough to catch an off-by-one window or a wrong denominator.
CONVERSION_TOLERANCE = 0.035
RETENTION_TOLERANCE = 0.06


def _read_all(directory) -> list[dict]:
    files = sorted(directory.rglob("*.parquet")) if directory.is_dir() else []
    return [row for f in files for row in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def pipeline_run(kafka_broker, fresh_topics, tmp_path_factory):
    from engagement.airflow_local import run_dag
    from streaming.generator import GeneratorConfig, expected_rates, generate
    from streaming.loader import Loader
    from streaming.producer import produce

    settings = replace(kafka_broker, home=tmp_path_factory.mktemp("e2e-home"), consumer_group="e2e-loader")
    config = GeneratorConfig(start_date=START, days=DAYS, seed=11, duplicate_rate=0.02, invalid_rate=0.005, late_rate=0.01)
    messages = list(generate(config))
    produced = produce(messages, settings.bootstrap_servers)
    stats = Loader(settings, until_idle=True, idle_seconds=3).run()
    state = run_dag(settings, AS_OF)
    return settings, config, messages, produced, stats, state, expected_rates(config)


def test_every_message_lands_in_exactly_one_place(pipeline_run):
    settings, _, messages, produced, stats, _, _ = pipeline_run
    assert produced == len(messages)
    assert stats.consumed == len(messages)
    landed = Counter()
    for table in (layout.BRONZE_EVENTS, layout.BRONZE_IDENTITY, layout.QUARANTINE):
        for row in _read_all(settings.warehouse / table):
            landed[(row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])] += 1
    assert max(landed.values()) == 1, "a message landed twice"
    assert sum(landed.values()) == len(messages)
    per_topic = Counter(topic for topic, _, _ in landed)
    expected_per_topic = Counter(m.topic for m in messages)
    assert per_topic == expected_per_topic
    # The invalid ones, and only those, are in quarantine.
    quarantined = _read_all(settings.warehouse / layout.QUARANTINE)
    assert len(quarantined) == sum(1 for m in messages if not m.valid)
    assert {q["value"] for q in quarantined} == {m.value for m in messages if not m.valid}
    assert all(q["error_class"] and q["error_message"] for q in quarantined)


def test_dead_letters_carry_source_and_reason(pipeline_run, kafka_broker):
    from kafka import KafkaConsumer

    settings, _, messages, *_ = pipeline_run
    invalid = sum(1 for m in messages if not m.valid)
    consumer = KafkaConsumer(
        DEADLETTER_TOPIC,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert len(records) == invalid
    headers = dict(records[0].headers)
    assert headers["engagement.errors.topic"].decode() in (KUAISHOU_TOPIC, WECHAT_TOPIC, IDENTITY_TOPIC)
    assert int(headers["engagement.errors.offset"]) >= 0
    assert headers["engagement.errors.class"] and headers["engagement.errors.message"]


def test_airflow_run_succeeded_and_redeliveries_count_once(pipeline_run, spark):
    settings, _, messages, *_rest = pipeline_run
    state = pipeline_run[5]
    assert state == "success"
    valid_ids = {m.event_id for m in messages if m.valid and m.topic in (KUAISHOU_TOPIC, WECHAT_TOPIC)}
    assert sum(1 for m in messages if m.valid and m.topic != IDENTITY_TOPIC) > len(valid_ids), "the run had no redeliveries"
    from core.storage import LocalStore
    from engagement.incremental import silver_events

    silver = silver_events(spark, LocalStore(settings.warehouse))
    assert silver.count() == len(valid_ids) == silver.select("event_id").distinct().count()


def test_conversion_matches_the_generator(pipeline_run):
    settings, _, _, _, _, _, expected = pipeline_run
    rows = run_query(
        settings.warehouse,
        "SELECT platform, funnel, SUM(conversions) / SUM(attempts), SUM(attempts) FROM join_conversion GROUP BY ALL",
    ).rows
    measured = {(platform, funnel): (rate, attempts) for platform, funnel, rate, attempts in rows}
    generated = {(p, f): rate for p, funnels in expected["join_conversion"].items() for f, rate in funnels.items()}
    assert set(measured) == set(generated)
    for key, rate in generated.items():
        got, attempts = measured[key]
        assert attempts >= 300, f"too few {key} attempts ({attempts}) to compare"
        assert got == pytest.approx(rate, abs=CONVERSION_TOLERANCE), f"{key}: measured {got:.3f}, generated {rate:.3f}"


def test_retention_matches_the_generator(pipeline_run):
    settings, _, _, _, _, _, expected = pipeline_run
    rows = run_query(
        settings.warehouse,
        "SELECT platform, day_offset, SUM(retained_users) / SUM(cohort_users), SUM(cohort_users) FROM retention_cohorts GROUP BY ALL",
    ).rows
    measured = {(platform, day): (rate, users) for platform, day, rate, users in rows}
    # Day 14 and 30 have few cohorts in 35 days; the demo prints them beside the generator's.
    generated = {(p, d): rate for p, days in expected["retention"].items() for d, rate in days.items() if d <= 7}
    for (platform, day), rate in generated.items():
        got, users = measured[(platform, day)]
        assert users >= 200, f"too few {platform} day-{day} cohort users ({users})"
        assert got == pytest.approx(rate, abs=RETENTION_TOLERANCE), f"{platform} day {day}: {got:.3f} vs {rate:.3f}"
