"""cross_platform_propagation and cross_platform_overlap on small hand-written event sets.

event_time is given in UTC; event_date is the Asia/Shanghai (UTC+8) calendar date of it, written
out by hand: 16:00 UTC and later is already the next day in Shanghai.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from pyspark.sql.types import DateType, DoubleType, LongType
from silver_rows import rows, silver_event, silver_events, utc

from jobs.gold import build_gold_tables
from jobs.gold_cross_platform import build_cross_platform_overlap, build_cross_platform_propagation
from jobs.schemas import IDENTITY_MAP


def like(event_id: str, person_id: str, event_time: datetime, event_date: date, content_id):
    """A Kuaishou like by the person's Kuaishou account (k<n> for person P<n>)."""
    user_id = "k" + person_id[1:]
    return silver_event(
        event_id, "like", "kuaishou", user_id, event_time, event_date,
        person_id=person_id, content_id=content_id,
    )


def wechat_share(event_id: str, person_id: str, event_time: datetime, event_date: date, content_id):
    """A share on WeChat by the person's OpenID (o<n> for person P<n>)."""
    user_id = "o" + person_id[1:]
    return silver_event(
        event_id, "share", "wechat", user_id, event_time, event_date,
        person_id=person_id, content_id=content_id, target_platform="wechat",
    )


SECOND = timedelta(seconds=1)
DAY = timedelta(hours=24)

# P1 and P3 have linked WeChat accounts; P2 has only Kuaishou.
IDENTITY = [
    ("P1", "kuaishou", "k1"),
    ("P1", "wechat", "o1"),
    ("P1", "wechat_unionid", "u1"),
    ("P2", "kuaishou", "k2"),
    ("P3", "kuaishou", "k3"),
    ("P3", "wechat", "o3"),
]

T1 = utc(2026, 3, 1, 2)
T2 = utc(2026, 3, 1, 3)
T3 = utc(2026, 3, 1, 4)
T4 = utc(2026, 3, 1, 5)
B1 = utc(2026, 3, 2, 2)
B2 = utc(2026, 3, 2, 3)
B3 = utc(2026, 3, 2, 4)
B4 = utc(2026, 3, 2, 5)
B5 = utc(2026, 3, 2, 6)
D1, D2, D3, D4, D5 = (date(2026, 3, day) for day in range(1, 6))

PROPAGATION_EVENTS = [
    # 02-28: only a like by unlinked P2 -> no row for that day.
    like("x0", "P2", utc(2026, 2, 28, 2), date(2026, 2, 28), "v0"),
    # 03-01: four propagated likes with latencies 10, 20, 30, 40 s.
    like("l1", "P1", T1, D1, "v1"),
    wechat_share("s1a", "P1", T1 - 5 * SECOND, D1, "v1"),  # before the like: ignored
    wechat_share("s1b", "P1", T1 + 50 * SECOND, D1, "v1"),
    wechat_share("s1c", "P1", T1 + 10 * SECOND, D1, "v1"),  # earliest in the window: 10 s
    like("l2", "P1", T2, D1, "v2"),
    wechat_share("s2x", "P3", T2 + SECOND, D1, "v2"),  # another person: ignored
    wechat_share("s2y", "P1", T2 + 2 * SECOND, D1, "v9"),  # other content: ignored
    wechat_share("s2", "P1", T2 + 20 * SECOND, D1, "v2"),
    like("l3", "P1", T3, D1, "v3"),
    wechat_share("s3", "P1", T3 + 30 * SECOND, D1, "v3"),
    like("l4", "P3", T4, D1, "v4"),
    wechat_share("s4", "P3", T4 + 40 * SECOND, D1, "v4"),
    # A like without content is a like that cannot propagate.
    like("l5", "P1", utc(2026, 3, 1, 6), D1, None),
    # Shared only on Kuaishou (even though to WeChat): not a WeChat share.
    like("l6", "P1", utc(2026, 3, 1, 7), D1, "v6"),
    silver_event(
        "s6", "share", "kuaishou", "k1", utc(2026, 3, 1, 7, 0, 5), D1,
        person_id="P1", content_id="v6", target_platform="wechat",
    ),
    # Unlinked P2: not counted at all.
    like("l7", "P2", utc(2026, 3, 1, 8), D1, "v7"),
    # 03-02: window boundaries.
    like("m1", "P1", B1, D2, "w1"),
    wechat_share("n1", "P1", B1 + DAY, D3, "w1"),  # exactly 24 h: propagated, 86400 s
    like("m2", "P1", B2, D2, "w2"),
    wechat_share("n2", "P1", B2 + DAY + SECOND, D3, "w2"),  # 24 h + 1 s: too late
    like("m3", "P1", B3, D2, "w3"),
    wechat_share("n3", "P1", B3 - SECOND, D2, "w3"),  # 1 s before: not a propagation
    like("m4", "P1", B4, D2, "w4"),
    wechat_share("n4", "P1", B4 + timedelta(milliseconds=250), D2, "w4"),  # 0.25 s
    like("m5", "P1", B5, D2, "w5"),
    wechat_share("n5", "P1", B5, D2, "w5"),  # the same instant: 0 s
    # 03-03: a like that never propagates.
    like("q1", "P3", utc(2026, 3, 3, 2), D3, "y1"),
    # 03-04 in Shanghai (16:30 UTC on 03-03): latency 5 s.
    like("r1", "P1", utc(2026, 3, 3, 16, 30), D4, "z1"),
    wechat_share("t1", "P1", utc(2026, 3, 3, 16, 30, 5), D4, "z1"),
    # 03-05: propagated, but its day is not over at as_of 03-05.
    like("r2", "P1", utc(2026, 3, 5, 2), D5, "z2"),
    wechat_share("t2", "P1", utc(2026, 3, 5, 2, 0, 5), D5, "z2"),
]

ROW_03_01 = (
    D1, 6, 4, pytest.approx(4 / 6),
    # latencies 10, 20, 30, 40: ranks 1.5, 2.7, 2.97 of 0..3
    pytest.approx(25.0), pytest.approx(37.0), pytest.approx(39.7),
)
ROW_03_02 = (
    D2, 5, 3, pytest.approx(3 / 5),
    # latencies 0, 0.25, 86400: p50 = 0.25; p90 at rank 1.8 = 0.25 + 0.8 * 86399.75;
    # p99 at rank 1.98 = 0.25 + 0.98 * 86399.75
    pytest.approx(0.25), pytest.approx(69120.05), pytest.approx(84672.005),
)
ROW_03_03 = (D3, 1, 0, 0.0, None, None, None)
ROW_03_04 = (D4, 1, 1, 1.0, 5.0, 5.0, 5.0)


def propagation(spark, as_of_date: date):
    return build_cross_platform_propagation(
        silver_events(spark, PROPAGATION_EVENTS),
        spark.createDataFrame(IDENTITY, IDENTITY_MAP),
        as_of_date=as_of_date,
    )


def test_cross_platform_propagation(spark):
    # as_of 03-05: 03-04 + 1 <= as_of is reported, 03-05 is not over yet.
    result = propagation(spark, D5)

    assert [(f.name, f.dataType) for f in result.schema] == [
        ("event_date", DateType()),
        ("likes", LongType()),
        ("propagated", LongType()),
        ("propagation_rate", DoubleType()),
        ("latency_p50_s", DoubleType()),
        ("latency_p90_s", DoubleType()),
        ("latency_p99_s", DoubleType()),
    ]
    assert rows(result) == [ROW_03_01, ROW_03_02, ROW_03_03, ROW_03_04]


def test_propagation_day_waits_until_its_24_hours_are_over(spark):
    # as_of 03-04: 03-04 itself is not over yet (03-04 + 1 > as_of).
    assert rows(propagation(spark, D4)) == [ROW_03_01, ROW_03_02, ROW_03_03]


OVERLAP_EVENTS = [
    # P1: Kuaishou k1 and WeChat o1 are linked -> one person who joined on both.
    silver_event(
        "j1", "join", "kuaishou", "k1", utc(2026, 3, 1, 2), D1,
        person_id="P1", group_id="g1", channel="content",
    ),
    silver_event(
        "j2", "join", "wechat", "o1", utc(2026, 3, 2, 2), D2,
        person_id="P1", group_id="g9", channel="invite",
    ),
    # P2: Kuaishou only; a WeChat join after as_of does not count yet.
    silver_event(
        "j3", "join", "kuaishou", "k2", utc(2026, 3, 1, 2), D1,
        person_id="P2", group_id="g1", channel="search",
    ),
    silver_event(
        "j4", "join", "wechat", "o2", utc(2026, 3, 5, 16), date(2026, 3, 6),
        person_id="P2", group_id="g9", channel="invite",
    ),
    # P3: WeChat member; a Kuaishou like is not a membership.
    silver_event(
        "j5", "join", "wechat", "o3", utc(2026, 3, 3, 2), D3,
        person_id="P3", group_id="g9", channel="qr_code",
    ),
    silver_event(
        "j6", "like", "kuaishou", "k3", utc(2026, 3, 3, 2), D3,
        person_id="P3", content_id="v1", group_id="g1",
    ),
    # P4: likes only -> not a member anywhere.
    silver_event(
        "j7", "like", "wechat", "o4", utc(2026, 3, 3, 2), D3,
        person_id="P4", content_id="v1",
    ),
    # P5: two Kuaishou groups, still one person.
    silver_event(
        "j8", "join", "kuaishou", "k5", utc(2026, 3, 1, 2), D1,
        person_id="P5", group_id="g1", channel="content",
    ),
    silver_event(
        "j9", "join", "kuaishou", "k5", utc(2026, 3, 2, 2), D2,
        person_id="P5", group_id="g2", channel="content",
    ),
]


def test_cross_platform_overlap(spark):
    as_of = date(2026, 3, 5)
    result = build_cross_platform_overlap(
        silver_events(spark, OVERLAP_EVENTS), as_of_date=as_of
    )

    assert [(f.name, f.dataType) for f in result.schema] == [
        ("as_of_date", DateType()),
        ("kuaishou_members", LongType()),
        ("wechat_members", LongType()),
        ("both", LongType()),
        ("overlap_rate", DoubleType()),
    ]
    # Kuaishou: P1, P2, P5; WeChat: P1, P3; both: P1; anywhere: P1, P2, P3, P5.
    assert rows(result) == [(as_of, 3, 2, 1, 0.25)]


def test_cross_platform_overlap_without_members_is_one_row_with_null_rate(spark):
    as_of = date(2026, 2, 28)  # before every join
    result = build_cross_platform_overlap(
        silver_events(spark, OVERLAP_EVENTS), as_of_date=as_of
    )
    assert rows(result) == [(as_of, 0, 0, 0, None)]


def test_build_gold_tables_takes_persons_from_the_identity_map(spark):
    # Silver stores events without person_id; build_gold_tables joins it on for the two
    # cross-platform tables only. The events' own person ids are dropped here, so the rows
    # above can only come out again through the identity maps given.
    stored = silver_events(spark, PROPAGATION_EVENTS).drop("person_id")
    tables = build_gold_tables(stored, spark.createDataFrame(IDENTITY, IDENTITY_MAP), as_of_date=D5)
    assert rows(tables["cross_platform_propagation"]) == [ROW_03_01, ROW_03_02, ROW_03_03, ROW_03_04]

    overlap_identity = [
        ("P1", "kuaishou", "k1"), ("P1", "wechat", "o1"), ("P2", "kuaishou", "k2"), ("P2", "wechat", "o2"),
        ("P3", "wechat", "o3"), ("P3", "kuaishou", "k3"), ("P4", "wechat", "o4"), ("P5", "kuaishou", "k5"),
    ]  # fmt: skip
    stored = silver_events(spark, OVERLAP_EVENTS).drop("person_id")
    tables = build_gold_tables(stored, spark.createDataFrame(overlap_identity, IDENTITY_MAP), as_of_date=D5)
    # As test_cross_platform_overlap: Kuaishou P1, P2, P5; WeChat P1, P3; both P1; anywhere 4.
    # (Each account a person of its own would give both = 0.)
    assert rows(tables["cross_platform_overlap"]) == [(D5, 3, 2, 1, 0.25)]
