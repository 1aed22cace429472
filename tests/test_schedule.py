"""Which day a run computes, and when the scheduler starts it (DESIGN section 5)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pendulum
import pytest

from engagement.schedule import as_of_for_run, daily_timetable, last_complete_day, trigger_cron

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_trigger_is_the_allowance_after_midnight():
    assert trigger_cron(0) == "0 0 * * *"
    assert trigger_cron(60) == "0 1 * * *"
    assert trigger_cron(90) == "30 1 * * *"
    assert trigger_cron(25 * 60 + 5) == "5 1 * * *"  # a day and more: the day after, at 01:05


def _first_runs(timetable, start: datetime, count: int) -> list:
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(earliest=pendulum.instance(start), latest=None, catchup=True)
    infos, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        infos.append(info)
        last = info.data_interval
    return infos


def test_scheduled_run_for_a_day_starts_after_it_ended_plus_the_allowance():
    timetable = daily_timetable(timezone="Asia/Shanghai", allowance_minutes=90)
    infos = _first_runs(timetable, datetime(2026, 3, 1, tzinfo=SHANGHAI), 3)
    # Logical date = start of the day computed, 00:00 in the reporting zone.
    assert [i.logical_date for i in infos] == [
        datetime(2026, 2, 28, 0, 0, tzinfo=SHANGHAI),
        datetime(2026, 3, 1, 0, 0, tzinfo=SHANGHAI),
        datetime(2026, 3, 2, 0, 0, tzinfo=SHANGHAI),
    ]
    # It runs once that day is over, plus 90 minutes.
    assert [i.run_after for i in infos] == [
        datetime(2026, 3, 1, 1, 30, tzinfo=SHANGHAI),
        datetime(2026, 3, 2, 1, 30, tzinfo=SHANGHAI),
        datetime(2026, 3, 3, 1, 30, tzinfo=SHANGHAI),
    ]
    for info in infos:
        day = as_of_for_run(conf={}, logical_date=info.logical_date, run_after=info.run_after, run_type="scheduled",
                            timezone="Asia/Shanghai", allowance_minutes=90)  # fmt: skip
        assert day == info.logical_date.astimezone(SHANGHAI).date()
        assert datetime.combine(day + timedelta(days=1), datetime.min.time(), SHANGHAI) + timedelta(minutes=90) <= info.run_after


def test_a_day_is_a_calendar_day_across_daylight_saving():
    berlin = ZoneInfo("Europe/Berlin")  # 2026-03-29 has 23 hours, 2026-10-25 has 25
    timetable = daily_timetable(timezone="Europe/Berlin", allowance_minutes=30)
    for first in (datetime(2026, 3, 27, tzinfo=berlin), datetime(2026, 10, 23, tzinfo=berlin)):
        infos = _first_runs(timetable, first, 4)
        days = [
            as_of_for_run(conf=None, logical_date=i.logical_date, run_after=i.run_after, run_type="scheduled",
                          timezone="Europe/Berlin", allowance_minutes=30)  # fmt: skip
            for i in infos
        ]
        assert days == [first.date() - timedelta(days=1) + timedelta(days=n) for n in range(4)]
        assert [i.run_after.astimezone(berlin).strftime("%H:%M") for i in infos] == ["00:30"] * 4
    # A backfill run is judged the same way as a scheduled one.
    info = _first_runs(timetable, datetime(2026, 3, 30, tzinfo=berlin), 1)[0]
    assert as_of_for_run(conf={}, logical_date=info.logical_date, run_after=info.run_after, run_type="backfill",
                         timezone="Europe/Berlin", allowance_minutes=30) == date(2026, 3, 29)  # fmt: skip


def test_manual_runs_name_their_day():
    after = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    kwargs = dict(run_after=after, run_type="manual", timezone="Asia/Shanghai", allowance_minutes=60)
    assert as_of_for_run(conf={"as_of_date": "2026-11-04"}, logical_date=None, **kwargs) == date(2026, 11, 4)
    # conf wins over the logical date
    logical = datetime(2026, 11, 10, 0, 0, tzinfo=SHANGHAI)
    assert as_of_for_run(conf={"as_of_date": "2026-11-04"}, logical_date=logical, **kwargs) == date(2026, 11, 4)
    # 2026-11-09T16:00Z is 2026-11-10 00:00 in Shanghai
    assert as_of_for_run(conf={}, logical_date=datetime(2026, 11, 9, 16, 0, tzinfo=timezone.utc), **kwargs) == date(2026, 11, 10)
    with pytest.raises(ValueError, match="not a date"):
        as_of_for_run(conf={"as_of_date": "yesterday"}, logical_date=None, **kwargs)


def test_without_a_named_day_a_run_computes_the_last_complete_day():
    # 00:30 on Nov 5 in Shanghai: Nov 4 ended 30 minutes ago, inside the 60-minute allowance.
    early = datetime(2026, 11, 5, 0, 30, tzinfo=SHANGHAI)
    assert last_complete_day(early, timezone="Asia/Shanghai", allowance_minutes=60) == date(2026, 11, 3)
    assert last_complete_day(early + timedelta(minutes=30), timezone="Asia/Shanghai", allowance_minutes=60) == date(2026, 11, 4)
    assert as_of_for_run(
        conf=None, logical_date=None, run_after=early, run_type="manual", timezone="Asia/Shanghai", allowance_minutes=0
    ) == date(2026, 11, 4)


def test_the_failure_callback_names_the_date_the_step_and_the_expectations(tmp_path, monkeypatch, caplog):
    from types import SimpleNamespace

    from engagement import runs
    from engagement.schedule import on_task_failure
    from expectations.runner import LayerReport, QualityGateFailed, TableResult

    monkeypatch.setenv("ENGAGEMENT_HOME", str(tmp_path))
    warehouse = tmp_path / "warehouse"
    runs.start_step(warehouse, "manual__x", date(2026, 11, 4), "manual")
    docs = str(tmp_path / "data_docs" / "index.html")
    report = LayerReport("gold", [TableResult("gold", "join_conversion", False, ["conversion_rate between 0 and 1: 2 of 9 rows"])], docs)
    # What Airflow hands a task's on_failure_callback (the parts it reads).
    context = {
        "task_instance": SimpleNamespace(task_id="validate_gold", try_number=3, max_tries=2),
        "exception": QualityGateFailed(report),
        "dag_run": SimpleNamespace(run_id="manual__x", conf={"as_of_date": "2026-11-04"}, run_type="manual",
                                   run_after=datetime(2026, 11, 23, tzinfo=timezone.utc), triggering_user_name=None),
        "logical_date": None,
    }  # fmt: skip
    with caplog.at_level("ERROR", logger="engagement.schedule"):
        on_task_failure(context)
    assert "engagement_daily as of 2026-11-04: step validate_gold failed (try 3 of 3)" in caplog.text
    assert "failed expectation in gold.join_conversion: conversion_rate between 0 and 1: 2 of 9 rows" in caplog.text
    (record,) = runs.list_runs(warehouse)
    assert (record["status"], record["failed_step"]) == ("failed", "validate_gold")
    assert record["gate_results"]["gold"] == {"passed": False, "critical_failures": 1, "warnings": 0, "data_docs": docs}
