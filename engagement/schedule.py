"""When the daily DAG runs and which day a run computes (DESIGN section 5).

A scheduled run for day ``D`` starts only after ``D`` has ended in the reporting time zone plus
an allowance for late arrivals (``ENGAGEMENT_LATE_ALLOWANCE_MINUTES``), and computes as of
``D``. In Airflow's terms: a cron trigger at ``00:00 + allowance`` (reporting zone) every day,
whose data interval reaches back one day and the allowance, so that the run's logical date
(the start of its data interval) is ``D 00:00`` in the reporting zone.

A scheduled or backfill run computes the day that ended ``allowance`` before it was due
(``run_after``): that is ``D``, also on days with a daylight-saving change, where Airflow's
logical date (``run_after`` minus a fixed interval in UTC) can land an hour into the day before.
Manual runs name the day they compute: ``conf={"as_of_date": "YYYY-MM-DD"}`` wins (for any run);
otherwise the logical date's calendar day in the reporting zone. A manual run with neither
computes the last complete day (the same day a scheduled run at that moment would).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("engagement.schedule")


def trigger_cron(allowance_minutes: int) -> str:
    """The cron expression (reporting zone) of the daily trigger: ``allowance`` after midnight."""
    minutes = allowance_minutes % (24 * 60)
    return f"{minutes % 60} {minutes // 60} * * *"


def daily_timetable(*, timezone: str, allowance_minutes: int):
    """The ``engagement_daily`` timetable: the run for D triggers at D+1 00:00 + allowance."""
    from airflow.timetables.trigger import CronTriggerTimetable
    from dateutil.relativedelta import relativedelta

    # A calendar day plus the allowance (relativedelta: a day is a day, also across DST), so the
    # data interval starts at D 00:00 local time.
    return CronTriggerTimetable(
        trigger_cron(allowance_minutes),
        timezone=timezone,
        interval=relativedelta(days=1, minutes=allowance_minutes),
    )


def last_complete_day(now: datetime, *, timezone: str, allowance_minutes: int) -> date:
    """The latest day that has ended in ``timezone`` at least ``allowance`` before ``now``."""
    local = _local(now, timezone) - timedelta(minutes=allowance_minutes)
    return local.date() - timedelta(days=1)


def _local(instant: datetime, timezone: str) -> datetime:
    """``instant`` as a plain ``datetime`` in ``timezone`` (pendulum's DateTime loses the zone
    in arithmetic with a ``ZoneInfo``)."""
    return datetime.fromtimestamp(instant.timestamp(), ZoneInfo(timezone))


SCHEDULED_RUN_TYPES = ("scheduled", "backfill")


def as_of_for_run(
    *,
    conf: dict[str, Any] | None,
    logical_date: datetime | None,
    run_after: datetime,
    run_type: str,
    timezone: str,
    allowance_minutes: int,
) -> date:
    """The day a DAG run computes: named in ``conf``; for a scheduled or backfill run the day
    that ended ``allowance`` before ``run_after``; for a manual run its logical date's day, or
    without one the last complete day at ``run_after``."""
    named = (conf or {}).get("as_of_date")
    if named:
        try:
            return date.fromisoformat(str(named))
        except ValueError:
            raise ValueError(f"conf as_of_date={named!r} is not a date like 2026-03-01") from None
    if logical_date is not None and run_type not in SCHEDULED_RUN_TYPES:
        return _local(logical_date, timezone).date()
    return last_complete_day(run_after, timezone=timezone, allowance_minutes=allowance_minutes)


def run_as_of(context: dict[str, Any], *, timezone: str, allowance_minutes: int) -> date:
    """:func:`as_of_for_run` for an Airflow task's context."""
    dag_run = context["dag_run"]
    return as_of_for_run(
        conf=dag_run.conf,
        logical_date=context.get("logical_date"),
        run_after=dag_run.run_after,
        run_type=run_type(context),
        timezone=timezone,
        allowance_minutes=allowance_minutes,
    )


def run_type(context: dict[str, Any]) -> str:
    """``scheduled``, ``manual``, ``backfill`` ...: the Airflow run type of a task's DAG run."""
    kind = context["dag_run"].run_type
    return str(getattr(kind, "value", kind))


def triggered_by(context: dict[str, Any]) -> str:
    """Who started a task's DAG run, for ``pipeline_runs``: the run type, and for a run someone
    triggered, who (``manual:alice``)."""
    user = getattr(context["dag_run"], "triggering_user_name", None)
    return run_type(context) + (f":{user}" if user else "")


def on_task_failure(context: dict[str, Any]) -> None:
    """Failure callback: log which date and which step (and expectation) failed, and make sure
    the run's ``pipeline_runs`` record says so even if the task died without raising."""
    from core.settings import Settings
    from core.storage import warehouse_store
    from engagement import runs

    settings = Settings.from_env()
    ti = context["task_instance"]
    error = context.get("exception") or "the task ended without an exception (killed or timed out?)"
    try:
        as_of = run_as_of(context, timezone=settings.timezone, allowance_minutes=settings.late_allowance_minutes)
    except ValueError:
        as_of = None
    log.error(
        "engagement_daily as of %s: step %s failed (try %s of %s): %s",
        as_of, ti.task_id, ti.try_number, ti.max_tries + 1, " ".join(str(error).split()),
    )  # fmt: skip
    report = getattr(error, "report", None)
    for result in getattr(report, "results", []):
        for failure in result.critical_failures:
            log.error("  failed expectation in %s.%s: %s", report.layer, result.table, failure)
    runs.fail_run(warehouse_store(settings), context["dag_run"].run_id, ti.task_id, error)
