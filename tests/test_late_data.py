"""Late data and re-runs through Kafka and Spark: traffic is delivered up to day D, the pipeline
runs for a range of dates, then the events that arrive late for days <= D are delivered and D is
re-run. The rows the late events feed change, by exactly their count, and nothing else does."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.contract import IDENTITY_TOPIC, parse_rfc3339
from engagement.query import run_query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 10, 1)
DAYS = 20
D = START + timedelta(days=15)
ZONE = ZoneInfo("Asia/Shanghai")


def _local_date(message) -> date:
    return parse_rfc3339(json.loads(message.value)["event_time"]).astimezone(ZONE).date()


def _table(warehouse, sql: str) -> dict[tuple, tuple]:
    return {row[:3]: row[3:] for row in run_query(warehouse, sql, as_of=D).rows}


DAILY = "SELECT platform, event_date, event_type, events, users FROM daily_engagement"
CONVERSION = "SELECT platform, cohort_date, funnel, attempts, conversions FROM join_conversion"
RETENTION = "SELECT platform, cohort_date, day_offset, cohort_users, retained_users FROM retention_cohorts"


@pytest.fixture(scope="module")
def late_run(kafka_broker, fresh_topics, tmp_path_factory, spark):
    from engagement.pipeline import run_daily
    from streaming.generator import GeneratorConfig, generate
    from streaming.loader import Loader
    from streaming.producer import produce

    settings = replace(kafka_broker, home=tmp_path_factory.mktemp("late-home"), consumer_group="late-loader")
    config = GeneratorConfig(
        start_date=START, days=DAYS, seed=5, kuaishou_users=2500, wechat_users=1200, late_rate=0.05, duplicate_rate=0.01
    )
    messages = [m for m in generate(config) if m.valid]
    # Late: what the generator delays past D for days <= D (1-3 days late), plus a whole
    # delayed day, D-8, whose join_conversion cohort is already published at D.
    delayed_day = D - timedelta(days=8)

    def is_late(m) -> bool:
        if m.topic == IDENTITY_TOPIC or _local_date(m) > D:
            return False
        return m.emit_date > D or _local_date(m) == delayed_day

    late = [m for m in messages if is_late(m)]
    on_time = [m for m in messages if m.emit_date <= D and not is_late(m)]
    assert any(m.emit_date > D for m in late), "the generator produced no late events for days <= D"

    produce(on_time, settings.bootstrap_servers)
    Loader(settings, until_idle=True, idle_seconds=2).run()
    for as_of in (D - timedelta(days=1), D):  # a range of logical dates
        run_daily(spark, settings, as_of)
    before = {name: _table(settings.warehouse, sql) for name, sql in (("daily", DAILY), ("conversion", CONVERSION), ("retention", RETENTION))}

    run_daily(spark, settings, D)  # the same date again, same input
    rerun = {name: _table(settings.warehouse, sql) for name, sql in (("daily", DAILY), ("conversion", CONVERSION), ("retention", RETENTION))}

    produce(late, settings.bootstrap_servers)
    Loader(settings, until_idle=True, idle_seconds=2).run()
    run_daily(spark, settings, D)
    after = {name: _table(settings.warehouse, sql) for name, sql in (("daily", DAILY), ("conversion", CONVERSION), ("retention", RETENTION))}
    on_time_ids = {m.event_id for m in on_time}
    new_late = {m.event_id: m for m in late if m.event_id not in on_time_ids}
    return before, rerun, after, list(new_late.values()), on_time


def test_rerun_of_same_date_gives_identical_rows(late_run):
    before, rerun, *_ = late_run
    assert rerun == before


def test_daily_engagement_changes_exactly_where_late_events_fall(late_run):
    before, _, after, late, _ = late_run
    expected_delta = Counter()
    for m in late:
        body = json.loads(m.value)
        expected_delta[(body["platform"], _local_date(m), body["event_type"])] += 1
    changed = {key for key in after["daily"] if after["daily"][key] != before["daily"].get(key)}
    assert changed == set(expected_delta), "rows changed that no late event touches, or a touched row did not change"
    for key, delta in expected_delta.items():
        old_events = before["daily"].get(key, (0, 0))[0]
        assert after["daily"][key][0] == old_events + delta


def test_cohort_tables_change_only_where_late_events_reach(late_run):
    before, _, after, late, on_time = late_run
    late_events = [(json.loads(m.value), _local_date(m)) for m in late]
    # What a late event on day d can touch:
    # * join_conversion: cohorts d-7 .. d (its own attempt, or a conversion / a last touch of an
    #   invitation or like up to 7 days earlier); a late join also turns later likes of the same
    #   user and group into "already a member", so every cohort from d on.
    # * retention_cohorts: cohorts d-N for N in 0, 1, 7, 14, 30; a late join can also move its
    #   user's cohort away from their first on-time join date.
    conversion_reach, retention_reach = set(), set()
    first_join: dict[tuple[str, str], date] = {}
    for m in on_time:
        body = json.loads(m.value)
        if m.topic != IDENTITY_TOPIC and body["event_type"] == "join" and _local_date(m) <= D:
            key = (body["platform"], body["user_id"])
            first_join[key] = min(first_join.get(key, date.max), _local_date(m))
    for body, d in late_events:
        conversion_reach |= {d - timedelta(days=k) for k in range(8)}
        retention_reach |= {d - timedelta(days=k) for k in (0, 1, 7, 14, 30)}
        if body["event_type"] == "join":
            conversion_reach |= {d + timedelta(days=k) for k in range((D - d).days + 1)}
            if (body["platform"], body["user_id"]) in first_join:
                retention_reach.add(first_join[(body["platform"], body["user_id"])])
    changed_conversion = {k for k in after["conversion"] if after["conversion"][k] != before["conversion"].get(k)}
    changed_retention = {k for k in after["retention"] if after["retention"][k] != before["retention"].get(k)}
    assert changed_conversion and changed_retention, "late events changed no cohort row"
    assert {cohort for _, cohort, _ in changed_conversion} <= conversion_reach
    assert {cohort for _, cohort, _ in changed_retention} <= retention_reach
    # Unreached cohorts exist and kept their rows exactly.
    untouched = {k for k in before["retention"] if k[1] not in retention_reach}
    assert untouched and all(after["retention"][k] == before["retention"][k] for k in untouched)
