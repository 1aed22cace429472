"""Hand-written silver events for the gold-table tests.

Test files import these as ``from silver_rows import silver_event`` (tests/ is on sys.path through
conftest's rootdir insertion). event_time is given in UTC; event_date is written out by hand and
must be the Asia/Shanghai (UTC+8) calendar date of it, which silver_event checks.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from jobs.schemas import SILVER_EVENTS

REPORTING_ZONE = ZoneInfo("Asia/Shanghai")
WX = "wechat"
KS = "kuaishou"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    """A UTC instant (timezone-aware, so PySpark does not reinterpret it in the local zone)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


def assert_reporting_date(event_id: str, event_time: datetime, event_date: date) -> None:
    """The fixture states event_date explicitly; make sure it is the one silver would derive."""
    assert event_time.astimezone(REPORTING_ZONE).date() == event_date, (event_id, event_date)


def silver_event(
    event_id: str,
    event_type: str,
    platform: str,
    user_id: str,
    event_time: datetime,
    event_date: date,
    *,
    content_id: str | None = None,
    group_id: str | None = None,
    channel: str | None = None,
    inviter_user_id: str | None = None,
    target_platform: str | None = None,
    person_id: str | None = None,
) -> tuple:
    """One silver event as a tuple in SILVER_EVENTS column order.

    person_id defaults to one person per account, "person-<platform>-<user_id>".
    """
    assert_reporting_date(event_id, event_time, event_date)
    if person_id is None:
        person_id = f"person-{platform}-{user_id}"
    return (
        event_id,
        event_type,
        platform,
        user_id,
        event_time,
        event_date,
        content_id,
        group_id,
        channel,
        inviter_user_id,
        target_platform,
        person_id,
    )


def silver_events(spark, rows: list[tuple]):
    """A DataFrame of silver events with the SILVER_EVENTS schema."""
    return spark.createDataFrame(rows, schema=SILVER_EVENTS)


def rows(df) -> list[tuple]:
    """All rows as tuples, sorted with NULLs first in each column."""
    return sorted(
        (tuple(row) for row in df.collect()),
        key=lambda values: tuple((value is not None, value) for value in values),
    )
