"""group_health and group_survival on small hand-written event sets.

event_time is given in UTC; event_date is the Asia/Shanghai (UTC+8) calendar date of it, written
out by hand: 16:00 UTC and later is already the next day in Shanghai.
"""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from silver_rows import KS, WX, rows, silver_event, silver_events, utc

from jobs.gold_engagement import last_active_dates
from jobs.gold_groups import build_group_health, build_group_survival

AS_OF = date(2026, 3, 31)  # 7-day window 03-25..03-31, 14-day window 03-18..03-31


EVENTS = [
    # gA (kuaishou): the earliest join by time wins although its event_id is larger.
    silver_event(
        "a2", "join", KS, "uA1", utc(2026, 3, 1, 3), date(2026, 3, 1),
        group_id="gA", channel="content",
    ),
    silver_event(
        "a9", "join", KS, "uA2", utc(2026, 3, 1, 1), date(2026, 3, 1),
        group_id="gA", channel="qr_code",
    ),
    # uA1 is active on as_of-6 through a like outside any group.
    silver_event("a3", "like", KS, "uA1", utc(2026, 3, 25, 2), date(2026, 3, 25), content_id="c1"),
    # uA2's last event is on as_of-7 (silent, not inactive); the share names another group gZ.
    silver_event(
        "a4", "share", KS, "uA2", utc(2026, 3, 24, 2), date(2026, 3, 24),
        group_id="gZ", content_id="c1", target_platform="wechat",
    ),
    # After as_of: would make uA2 active if it were not dropped.
    silver_event("a5", "like", KS, "uA2", utc(2026, 4, 1, 2), date(2026, 4, 1), content_id="c1"),
    # gB (kuaishou): two joins at the same instant; the smaller event_id b0 gives the channel
    # (not the alphabetically smaller channel).
    silver_event(
        "b1", "join", KS, "uB1", utc(2026, 3, 1, 2), date(2026, 3, 1),
        group_id="gB", channel="invite",
    ),
    silver_event(
        "b0", "join", KS, "uB2", utc(2026, 3, 1, 2), date(2026, 3, 1),
        group_id="gB", channel="search",
    ),
    # A like carrying gB by a non-member exactly on first_event_date + 30: alive.
    silver_event(
        "b2", "like", KS, "uB3", utc(2026, 3, 31, 1), date(2026, 3, 31),
        group_id="gB", content_id="c2",
    ),
    # uB1's last kuaishou event: 16:30 UTC on 03-17 is 00:30 on 03-18 (as_of-13) in Shanghai.
    silver_event(
        "b3", "like", KS, "uB1", utc(2026, 3, 17, 16, 30), date(2026, 3, 18), content_id="c2",
    ),
    # uB2's last event is on as_of-14: inactive.
    silver_event("b4", "like", KS, "uB2", utc(2026, 3, 17, 2), date(2026, 3, 17), content_id="c2"),
    # The same user id on WeChat is another account: no activity for kuaishou's uB1.
    silver_event("b5", "like", WX, "uB1", utc(2026, 3, 30, 2), date(2026, 3, 30), content_id="c9"),
    # gC (wechat): younger than 30 days at as_of.
    silver_event(
        "c1", "join", WX, "uC1", utc(2026, 3, 10, 2), date(2026, 3, 10),
        group_id="gC", channel="qr_code",
    ),
    # 15:59:59 UTC is still 03-31 in Shanghai; 16:00 UTC is 04-01, after as_of.
    silver_event(
        "c2", "share", WX, "uC1", utc(2026, 3, 31, 15, 59, 59), date(2026, 3, 31),
        group_id="gC", content_id="c3", target_platform="wechat",
    ),
    silver_event(
        "c3", "share", WX, "uC1", utc(2026, 3, 31, 16), date(2026, 4, 1),
        group_id="gC", content_id="c3", target_platform="wechat",
    ),
    # Group id gA on WeChat is a different group from kuaishou's gA.
    silver_event(
        "w1", "join", WX, "uW1", utc(2026, 3, 31, 2), date(2026, 3, 31),
        group_id="gA", channel="official_account",
    ),
    # A group whose only event is after as_of has no row.
    silver_event(
        "z1", "join", KS, "uZ1", utc(2026, 4, 2, 2), date(2026, 4, 2),
        group_id="gLate", channel="invite",
    ),
]

GROUP_HEALTH_COLUMNS = [
    ("platform", StringType()),
    ("group_id", StringType()),
    ("as_of_date", DateType()),
    ("origin_channel", StringType()),
    ("first_event_date", DateType()),
    ("last_event_date", DateType()),
    ("members", LongType()),
    ("active_members_7d", LongType()),
    ("silent_members_7d", LongType()),
    ("inactive_members_14d", LongType()),
    ("alive_30d", BooleanType()),
]


@pytest.mark.parametrize("last_active", ["computed inside", "handed in"])
def test_group_health(spark, last_active):
    events = silver_events(spark, EVENTS)
    # A caller that builds member_lifetime too hands in the last active dates it computed once.
    handed = last_active_dates(events, as_of_date=AS_OF) if last_active == "handed in" else None
    result = build_group_health(events, as_of_date=AS_OF, last_active=handed)

    assert [(f.name, f.dataType) for f in result.schema] == GROUP_HEALTH_COLUMNS
    d = date
    assert rows(result) == [
        # members uA1 (active on as_of-6) and uA2 (last seen as_of-7): 1 active, 1 silent, none
        # inactive; 30 days are over (03-31) and nothing group-scoped after 03-01: not alive.
        ("kuaishou", "gA", AS_OF, "qr_code", d(2026, 3, 1), d(2026, 3, 1), 2, 1, 1, 0, False),
        # uB1 last seen as_of-13 (still within 14 days), uB2 as_of-14 (inactive); neither active
        # in 7 days. The like on 03-31 = 03-01 + 30 keeps the group alive.
        ("kuaishou", "gB", AS_OF, "search", d(2026, 3, 1), d(2026, 3, 31), 2, 0, 2, 1, True),
        # Only a share names gZ: no join, so no origin and no members; 03-24 + 30 > as_of.
        ("kuaishou", "gZ", AS_OF, None, d(2026, 3, 24), d(2026, 3, 24), 0, 0, 0, 0, None),
        ("wechat", "gA", AS_OF, "official_account", d(2026, 3, 31), d(2026, 3, 31),
         1, 1, 0, 0, None),
        # The 04-01 share is ignored: last_event_date is 03-31; 03-10 + 30 = 04-09 > as_of.
        ("wechat", "gC", AS_OF, "qr_code", d(2026, 3, 10), d(2026, 3, 31), 1, 1, 0, 0, None),
    ]


ALIVE_EVENTS = [
    silver_event(
        "g1", "join", KS, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1),
        group_id="g", channel="search",
    ),
    silver_event(
        "g2", "like", KS, "u2", utc(2026, 3, 30, 2), date(2026, 3, 30),
        group_id="g", content_id="c",
    ),
    silver_event(
        "g3", "like", KS, "u2", utc(2026, 3, 31, 2), date(2026, 3, 31),
        group_id="g", content_id="c",
    ),
]


def test_alive_30d_is_null_until_first_event_date_plus_30(spark):
    events = silver_events(spark, ALIVE_EVENTS)
    # u1, the only member, was last seen on 03-01: silent and inactive either way.
    # as_of 03-30 = first + 29: not decided yet, and the 03-31 like is not seen.
    assert rows(build_group_health(events, as_of_date=date(2026, 3, 30))) == [
        ("kuaishou", "g", date(2026, 3, 30), "search", date(2026, 3, 1), date(2026, 3, 30),
         1, 0, 1, 1, None),
    ]
    # as_of 03-31 = first + 30: the like on exactly first + 30 makes it alive.
    assert rows(build_group_health(events, as_of_date=date(2026, 3, 31))) == [
        ("kuaishou", "g", date(2026, 3, 31), "search", date(2026, 3, 1), date(2026, 3, 31),
         1, 0, 1, 1, True),
    ]


GROUP_HEALTH_SCHEMA = StructType(
    [StructField(name, data_type, True) for name, data_type in GROUP_HEALTH_COLUMNS]
)


def health_row(
    platform: str, group_id: str, origin_channel: str | None, first_event_date: date,
    alive_30d: bool | None,
) -> tuple:
    """A group_health row; only the columns group_survival reads carry meaning."""
    return (
        platform, group_id, date(2026, 3, 31), origin_channel, first_event_date,
        first_event_date, 1, 0, 1, 0, alive_30d,
    )


def test_group_survival_by_platform_channel_and_month(spark):
    group_health = spark.createDataFrame(
        [
            health_row("kuaishou", "g1", "invite", date(2026, 1, 5), True),
            health_row("kuaishou", "g2", "invite", date(2026, 1, 31), False),
            health_row("kuaishou", "g3", "invite", date(2026, 2, 1), True),
            health_row("kuaishou", "g4", None, date(2026, 1, 10), False),
            health_row("kuaishou", "g5", None, date(2026, 1, 11), True),
            health_row("kuaishou", "g6", "invite", date(2026, 1, 20), None),  # not decided
            health_row("wechat", "g1", "invite", date(2026, 1, 6), True),
            health_row("wechat", "g7", "qr_code", date(2026, 2, 20), None),  # not decided
        ],
        GROUP_HEALTH_SCHEMA,
    )
    result = build_group_survival(group_health)

    assert [(f.name, f.dataType) for f in result.schema] == [
        ("platform", StringType()),
        ("origin_channel", StringType()),
        ("cohort_month", DateType()),
        ("groups", LongType()),
        ("survived_30d", LongType()),
        ("survival_rate_30d", DoubleType()),
    ]
    assert rows(result) == [
        ("kuaishou", None, date(2026, 1, 1), 2, 1, 0.5),
        ("kuaishou", "invite", date(2026, 1, 1), 2, 1, 0.5),
        ("kuaishou", "invite", date(2026, 2, 1), 1, 1, 1.0),
        ("wechat", "invite", date(2026, 1, 1), 1, 1, 1.0),
    ]


def test_group_survival_of_group_health(spark):
    events = silver_events(spark, EVENTS)
    group_health = build_group_health(events, as_of_date=AS_OF)
    # Only kuaishou's gA (qr_code, dead) and gB (search, alive) have a decided alive_30d.
    assert rows(build_group_survival(group_health)) == [
        ("kuaishou", "qr_code", date(2026, 3, 1), 1, 0, 0.0),
        ("kuaishou", "search", date(2026, 3, 1), 1, 1, 1.0),
    ]
