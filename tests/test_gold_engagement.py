"""Unit tests of the gold engagement builders on hand-written silver events.

Every expected row below is worked out by hand from the fixture next to it. Reporting zone is
Asia/Shanghai (UTC+8): an event at 16:30Z belongs to the *next* local calendar day.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from silver_rows import KS, WX, silver_event, silver_events, utc

from jobs.gold_engagement import (
    RetentionRows,
    _invitation_outcomes,
    build_daily_engagement,
    build_join_conversion,
    build_member_lifetime,
    build_retention_cohorts,
    last_active_dates,
)

DAILY_ENGAGEMENT_COLUMNS = [
    ("platform", "string"),
    ("event_date", "date"),
    ("event_type", "string"),
    ("events", "bigint"),
    ("users", "bigint"),
]
JOIN_CONVERSION_COLUMNS = [
    ("platform", "string"),
    ("cohort_date", "date"),
    ("funnel", "string"),
    ("attempts", "bigint"),
    ("conversions", "bigint"),
    ("conversion_rate", "double"),
]
RETENTION_COLUMNS = [
    ("platform", "string"),
    ("cohort_date", "date"),
    ("day_offset", "int"),
    ("cohort_users", "bigint"),
    ("retained_users", "bigint"),
    ("retention_rate", "double"),
]
MEMBER_LIFETIME_COLUMNS = [
    ("platform", "string"),
    ("cohort_month", "date"),
    ("users", "bigint"),
    ("avg_lifetime_days", "double"),
    ("median_lifetime_days", "double"),
]


def ev(
    event_id: str,
    event_type: str,
    platform: str,
    user_id: str,
    event_time: datetime,
    event_date: date,
    *,
    group_id: str | None = None,
    inviter_user_id: str | None = None,
    content_id: str | None = None,
    channel: str | None = None,
) -> tuple:
    """A silver event with contract-valid defaults: likes and shares carry content, joins a
    channel, shares target their own platform."""
    if event_type in ("like", "share") and content_id is None:
        content_id = "video-1"
    if event_type == "join" and channel is None:
        channel = "invite" if inviter_user_id else "content"
    return silver_event(
        event_id,
        event_type,
        platform,
        user_id,
        event_time,
        event_date,
        content_id=content_id,
        group_id=group_id,
        channel=channel,
        inviter_user_id=inviter_user_id,
        target_platform=platform if event_type == "share" else None,
    )


def _sort_key(row: tuple) -> tuple:
    return tuple((value is None, value) for value in row)


def assert_df_equality(actual, expected_columns: list[tuple[str, str]], expected_rows):
    """Same column names and types, and the same rows in any order (doubles to 1e-9)."""
    assert [(f.name, f.dataType.simpleString()) for f in actual.schema.fields] == expected_columns
    actual_rows = sorted((tuple(row) for row in actual.collect()), key=_sort_key)
    expected_sorted = sorted(expected_rows, key=_sort_key)
    assert len(actual_rows) == len(expected_sorted), (actual_rows, expected_sorted)
    for got, want in zip(actual_rows, expected_sorted):
        assert got == tuple(
            pytest.approx(value, abs=1e-9) if isinstance(value, float) else value
            for value in want
        ), (got, want)


# --- daily_engagement ---------------------------------------------------------------------


def test_daily_engagement_counts_events_and_distinct_users(spark):
    events = silver_events(
        spark,
        [
            ev("e1", "like", WX, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1)),
            ev("e2", "like", WX, "u1", utc(2026, 3, 1, 3), date(2026, 3, 1)),
            # 23:59:59 local, still 1 March.
            ev("e3", "like", WX, "u2", utc(2026, 3, 1, 15, 59, 59), date(2026, 3, 1)),
            # 00:30 local on 2 March although the UTC date is 1 March.
            ev("e4", "like", WX, "u2", utc(2026, 3, 1, 16, 30), date(2026, 3, 2)),
            ev("e5", "share", WX, "u1", utc(2026, 3, 1, 4), date(2026, 3, 1), group_id="g1"),
            ev("e6", "like", KS, "u1", utc(2026, 3, 1, 5), date(2026, 3, 1)),
            # After as_of_date: ignored.
            ev("e7", "join", KS, "u3", utc(2026, 3, 3, 1), date(2026, 3, 3), group_id="g9"),
        ],
    )

    result = build_daily_engagement(events, as_of_date=date(2026, 3, 2))

    assert_df_equality(
        result,
        DAILY_ENGAGEMENT_COLUMNS,
        [
            ("kuaishou", date(2026, 3, 1), "like", 1, 1),
            ("wechat", date(2026, 3, 1), "like", 3, 2),
            ("wechat", date(2026, 3, 1), "share", 1, 1),
            ("wechat", date(2026, 3, 2), "like", 1, 1),
        ],
    )


# --- join_conversion: invite funnel -------------------------------------------------------


def test_invite_join_goes_to_the_most_recent_invitation(spark):
    events = silver_events(
        spark,
        [
            ev("inv-a1", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            # 01:00 local on 3 March.
            ev("inv-a2", "share", WX, "A", utc(2026, 3, 2, 17), date(2026, 3, 3), group_id="g1"),
            # Both invitations are within 7 days before the join; the later one wins.
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 4, 2), date(2026, 3, 4),
                group_id="g1", inviter_user_id="A",
            ),
        ],
    )

    result = build_join_conversion(events, as_of_date=date(2026, 3, 20))

    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [
            ("wechat", date(2026, 3, 1), "invite", 1, 0, 0.0),
            ("wechat", date(2026, 3, 3), "invite", 1, 1, 1.0),
        ],
    )


def _tied_invitations(spark):
    # Two invitations at the same instant; "inv-10" < "inv-2" in string order.
    return silver_events(
        spark,
        [
            ev("inv-2", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("inv-10", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 1, 5), date(2026, 3, 1),
                group_id="g1", inviter_user_id="A",
            ),
            ev(
                "j-c", "join", WX, "C", utc(2026, 3, 2, 5), date(2026, 3, 2),
                group_id="g1", inviter_user_id="A",
            ),
        ],
    )


def test_invite_tie_on_event_time_attributes_every_join_to_one_invitation(spark):
    result = build_join_conversion(_tied_invitations(spark), as_of_date=date(2026, 3, 8))

    # Both joins go to the same (smallest event_id) invitation: one of two converts.
    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 2, 1, 0.5)],
    )


def test_invite_tie_on_event_time_goes_to_smallest_event_id(spark):
    # Which tied invitation wins cannot be seen in the gold table, so check the per-invitation
    # step directly.
    outcomes = _invitation_outcomes(_tied_invitations(spark), window_days=7)

    assert sorted(
        (row["invite_event_id"], row["converted"]) for row in outcomes.collect()
    ) == [("inv-10", True), ("inv-2", False)]


def test_invite_window_is_inclusive_at_exactly_seven_days(spark):
    events = silver_events(
        spark,
        [
            ev("inv-1", "share", WX, "A", utc(2026, 3, 1, 4), date(2026, 3, 1), group_id="g1"),
            # Exactly 7 * 24 h later: attributed.
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 8, 4), date(2026, 3, 8),
                group_id="g1", inviter_user_id="A",
            ),
            ev("inv-2", "share", WX, "A", utc(2026, 3, 2, 5), date(2026, 3, 2), group_id="g2"),
            # 7 days and 1 second later: not attributed.
            ev(
                "j-c", "join", WX, "C", utc(2026, 3, 9, 5, 0, 1), date(2026, 3, 9),
                group_id="g2", inviter_user_id="A",
            ),
        ],
    )

    result = build_join_conversion(events, as_of_date=date(2026, 3, 9))

    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [
            ("wechat", date(2026, 3, 1), "invite", 1, 1, 1.0),
            ("wechat", date(2026, 3, 2), "invite", 1, 0, 0.0),
        ],
    )


def test_invite_with_two_joins_converts_once(spark):
    events = silver_events(
        spark,
        [
            ev("inv-1", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("inv-2", "share", WX, "D", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 1, 3), date(2026, 3, 1),
                group_id="g1", inviter_user_id="A",
            ),
            ev(
                "j-c", "join", WX, "C", utc(2026, 3, 2, 3), date(2026, 3, 2),
                group_id="g1", inviter_user_id="A",
            ),
        ],
    )

    result = build_join_conversion(events, as_of_date=date(2026, 3, 8))

    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 2, 1, 0.5)],
    )


def test_invite_join_is_not_attributed_across_group_platform_inviter_or_time(spark):
    events = silver_events(
        spark,
        [
            ev("inv-1", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            # A share without a group is not an invitation.
            ev("s-plain", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1)),
            # Names another group.
            ev(
                "j-other-group", "join", WX, "B", utc(2026, 3, 1, 3), date(2026, 3, 1),
                group_id="g2", inviter_user_id="A",
            ),
            # Same group and inviter id, but on the other platform.
            ev(
                "j-other-platform", "join", KS, "D", utc(2026, 3, 1, 3), date(2026, 3, 1),
                group_id="g1", inviter_user_id="A",
            ),
            # Another inviter.
            ev(
                "j-other-inviter", "join", WX, "E", utc(2026, 3, 1, 3), date(2026, 3, 1),
                group_id="g1", inviter_user_id="F",
            ),
            # Before the invitation was made.
            ev(
                "j-before", "join", WX, "G", utc(2026, 3, 1, 1), date(2026, 3, 1),
                group_id="g1", inviter_user_id="A",
            ),
            # No inviter named (scanned a group QR code).
            ev(
                "j-no-inviter", "join", WX, "H", utc(2026, 3, 1, 4), date(2026, 3, 1),
                group_id="g1", channel="qr_code",
            ),
        ],
    )

    result = build_join_conversion(events, as_of_date=date(2026, 3, 8))

    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 1, 0, 0.0)],
    )


# --- join_conversion: content funnel ------------------------------------------------------


def test_content_funnel_attempts_and_conversions(spark):
    events = silver_events(
        spark,
        [
            # u1: two likes the same day = one attempt timed at 02:00Z; the join is within 7 days
            # of the second like but 7 d 1 h after the first: not converted.
            ev("l-u1-a", "like", KS, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("l-u1-b", "like", KS, "u1", utc(2026, 3, 1, 6), date(2026, 3, 1), group_id="g1"),
            ev("j-u1", "join", KS, "u1", utc(2026, 3, 8, 3), date(2026, 3, 8), group_id="g1"),
            # u2: join exactly 7 * 24 h after the like: converted.
            ev("l-u2", "like", KS, "u2", utc(2026, 3, 1, 4), date(2026, 3, 1), group_id="g1"),
            ev("j-u2", "join", KS, "u2", utc(2026, 3, 8, 4), date(2026, 3, 8), group_id="g1"),
            # u3: already a member before the like: not an attempt.
            ev("j-u3", "join", KS, "u3", utc(2026, 2, 28, 10), date(2026, 2, 28), group_id="g1"),
            ev("l-u3", "like", KS, "u3", utc(2026, 3, 1, 5), date(2026, 3, 1), group_id="g1"),
            # u4: join at the very instant of the like: an attempt, and converted.
            ev("l-u4", "like", KS, "u4", utc(2026, 3, 1, 7), date(2026, 3, 1), group_id="g1"),
            ev("j-u4", "join", KS, "u4", utc(2026, 3, 1, 7), date(2026, 3, 1), group_id="g1"),
            # u5: liked content of g2, joined g1: an attempt for g2, not converted. A like that
            # promotes no group is no attempt.
            ev("l-u5", "like", KS, "u5", utc(2026, 3, 1, 8), date(2026, 3, 1), group_id="g2"),
            ev("l-u5-plain", "like", KS, "u5", utc(2026, 3, 1, 8), date(2026, 3, 1)),
            ev("j-u5", "join", KS, "u5", utc(2026, 3, 2, 8), date(2026, 3, 2), group_id="g1"),
            # u6: 00:30 local on 2 March, so cohort 2 March; joins 7.5 h later: converted.
            ev("l-u6", "like", KS, "u6", utc(2026, 3, 1, 16, 30), date(2026, 3, 2), group_id="g1"),
            ev("j-u6", "join", KS, "u6", utc(2026, 3, 2), date(2026, 3, 2), group_id="g1"),
            # u7: the join is on WeChat, so the Kuaishou attempt does not convert.
            ev("l-u7", "like", KS, "u7", utc(2026, 3, 2, 1), date(2026, 3, 2), group_id="g1"),
            ev("j-u7", "join", WX, "u7", utc(2026, 3, 2, 2), date(2026, 3, 2), group_id="g1"),
        ],
    )

    result = build_join_conversion(events, as_of_date=date(2026, 3, 9))

    assert_df_equality(
        result,
        JOIN_CONVERSION_COLUMNS,
        [
            # u1, u2, u4, u5 attempted; u2 and u4 converted.
            ("kuaishou", date(2026, 3, 1), "content", 4, 2, 0.5),
            # u6 and u7 attempted; u6 converted.
            ("kuaishou", date(2026, 3, 2), "content", 2, 1, 0.5),
        ],
    )


def test_join_conversion_rows_wait_until_the_window_is_over(spark):
    events = silver_events(
        spark,
        [
            ev("inv-1", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 2, 2), date(2026, 3, 2),
                group_id="g1", inviter_user_id="A",
            ),
            # 01:00 local on 2 March.
            ev("l-u1", "like", KS, "u1", utc(2026, 3, 1, 17), date(2026, 3, 2), group_id="k1"),
        ],
    )

    # 1 March + 7 = 8 March: nothing before that day.
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 7)), JOIN_CONVERSION_COLUMNS, []
    )
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 8)),
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 1, 1, 1.0)],
    )
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 9)),
        JOIN_CONVERSION_COLUMNS,
        [
            ("wechat", date(2026, 3, 1), "invite", 1, 1, 1.0),
            ("kuaishou", date(2026, 3, 2), "content", 1, 0, 0.0),
        ],
    )


def test_join_conversion_window_days_is_a_parameter(spark):
    events = silver_events(
        spark,
        [
            ev("inv-1", "share", WX, "A", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            # 25 hours later: outside a 1-day window, inside the default 7-day one.
            ev(
                "j-b", "join", WX, "B", utc(2026, 3, 2, 3), date(2026, 3, 2),
                group_id="g1", inviter_user_id="A",
            ),
        ],
    )

    # With a 1-day window the 1 March cohort is complete on 2 March.
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 2), window_days=1),
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 1, 0, 0.0)],
    )
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 2)), JOIN_CONVERSION_COLUMNS, []
    )
    assert_df_equality(
        build_join_conversion(events, as_of_date=date(2026, 3, 8)),
        JOIN_CONVERSION_COLUMNS,
        [("wechat", date(2026, 3, 1), "invite", 1, 1, 1.0)],
    )


# --- retention_cohorts --------------------------------------------------------------------


def test_retention_rows_only_for_days_already_over(spark):
    events = silver_events(
        spark,
        [
            # u1: cohort 1 March, active on day 1.
            ev("j-u1", "join", WX, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("l-u1", "like", WX, "u1", utc(2026, 3, 2, 1), date(2026, 3, 2), group_id="g1"),
            # u2: joins 01:00 local on 1 March; the 16:10Z like is 2 March local (day 1); the
            # share at 23:00 local on 8 March is day 7.
            ev("j-u2", "join", WX, "u2", utc(2026, 2, 28, 17), date(2026, 3, 1), group_id="g1"),
            ev("l-u2", "like", WX, "u2", utc(2026, 3, 1, 16, 10), date(2026, 3, 2)),
            ev("s-u2", "share", WX, "u2", utc(2026, 3, 8, 15), date(2026, 3, 8)),
            # u3: cohort 1 March (the second join does not move it); day-1 activity only on
            # Kuaishou, which does not count for WeChat.
            ev("j-u3", "join", WX, "u3", utc(2026, 3, 1, 3), date(2026, 3, 1), group_id="g1"),
            ev("l-u3-ks", "like", KS, "u3", utc(2026, 3, 2, 3), date(2026, 3, 2)),
            ev("j-u3-2", "join", WX, "u3", utc(2026, 3, 5, 3), date(2026, 3, 5), group_id="g2"),
            # u4: cohort 5 March; the 16:30Z like on 6 March is 7 March local, not day 1.
            ev("j-u4", "join", WX, "u4", utc(2026, 3, 5, 2), date(2026, 3, 5), group_id="g2"),
            ev("l-u4", "like", WX, "u4", utc(2026, 3, 6, 16, 30), date(2026, 3, 7)),
            # u5: joins after as_of_date: no cohort.
            ev("j-u5", "join", WX, "u5", utc(2026, 3, 9, 1), date(2026, 3, 9), group_id="g1"),
        ],
    )

    result = build_retention_cohorts(events, as_of_date=date(2026, 3, 8))

    assert_df_equality(
        result,
        RETENTION_COLUMNS,
        [
            ("wechat", date(2026, 3, 1), 1, 3, 2, 2 / 3),
            ("wechat", date(2026, 3, 1), 7, 3, 1, 1 / 3),
            ("wechat", date(2026, 3, 5), 1, 1, 0, 0.0),
        ],
    )


def test_retention_of_the_cohorts_from_a_date_on(spark):
    """A daily run recomputes only recent cohorts; a user who joined earlier stays out of them."""
    events = silver_events(
        spark,
        [
            # u3's first join (1 March) is before the cohorts asked for: the 5 March join does
            # not make u3 part of the 5 March cohort.
            ev("j-u3", "join", WX, "u3", utc(2026, 3, 1, 3), date(2026, 3, 1), group_id="g1"),
            ev("j-u3-2", "join", WX, "u3", utc(2026, 3, 5, 3), date(2026, 3, 5), group_id="g2"),
            ev("l-u3", "like", WX, "u3", utc(2026, 3, 6, 3), date(2026, 3, 6)),
            # u4: cohort 5 March, nothing on day 1.
            ev("j-u4", "join", WX, "u4", utc(2026, 3, 5, 2), date(2026, 3, 5), group_id="g2"),
            # u6: cohort 5 March, active on day 1.
            ev("j-u6", "join", WX, "u6", utc(2026, 3, 5, 4), date(2026, 3, 5), group_id="g2"),
            ev("l-u6", "like", WX, "u6", utc(2026, 3, 6, 4), date(2026, 3, 6)),
        ],
    )

    result = build_retention_cohorts(events, as_of_date=date(2026, 3, 8), only=RetentionRows(cohorts_from=date(2026, 3, 2)))

    assert_df_equality(result, RETENTION_COLUMNS, [("wechat", date(2026, 3, 5), 1, 2, 1, 0.5)])


def test_retention_of_some_rows_reads_the_activity_of_their_days_only(spark):
    """A daily run recomputes the rows whose day changed or is new, and whole cohorts from a
    date on; the activity of other days is not looked at, and their rows are not returned."""
    events = silver_events(
        spark,
        [
            ev("j-u1", "join", WX, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("l-u1-2", "like", WX, "u1", utc(2026, 3, 2, 2), date(2026, 3, 2)),
            ev("l-u1-8", "like", WX, "u1", utc(2026, 3, 8, 2), date(2026, 3, 8)),
            ev("j-u2", "join", WX, "u2", utc(2026, 3, 1, 3), date(2026, 3, 1), group_id="g1"),
            ev("l-u2-8", "like", WX, "u2", utc(2026, 3, 8, 3), date(2026, 3, 8)),
            ev("j-u3", "join", WX, "u3", utc(2026, 3, 7, 2), date(2026, 3, 7), group_id="g1"),
            ev("l-u3-8", "like", WX, "u3", utc(2026, 3, 8, 4), date(2026, 3, 8)),
        ],
    )
    as_of = date(2026, 3, 8)

    new_day = build_retention_cohorts(events, as_of_date=as_of, only=RetentionRows(days=frozenset({as_of})))
    late = build_retention_cohorts(
        events, as_of_date=as_of, only=RetentionRows(cohorts_from=date(2026, 3, 7), days=frozenset({date(2026, 3, 2)}))
    )

    # Every row: (3-1, 1) 2 users, 1 retained; (3-1, 7) 2 and 2; (3-7, 1) 1 and 1.
    assert_df_equality(
        new_day,
        RETENTION_COLUMNS,
        [("wechat", date(2026, 3, 1), 7, 2, 2, 1.0), ("wechat", date(2026, 3, 7), 1, 1, 1, 1.0)],
    )
    assert_df_equality(
        late,
        RETENTION_COLUMNS,
        [("wechat", date(2026, 3, 1), 1, 2, 1, 0.5), ("wechat", date(2026, 3, 7), 1, 1, 1, 1.0)],
    )
    assert_df_equality(build_retention_cohorts(events, as_of_date=as_of, only=RetentionRows()), RETENTION_COLUMNS, [])


def test_retention_day_30_boundary_and_zero_rows(spark):
    events = silver_events(
        spark,
        [
            ev("j-u1", "join", KS, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("l-u1", "like", KS, "u1", utc(2026, 3, 31, 2), date(2026, 3, 31)),
            # After as_of_date: ignored (would otherwise be nothing anyway, but must not add a
            # cohort).
            ev("j-u2", "join", KS, "u2", utc(2026, 4, 1, 2), date(2026, 4, 1), group_id="g1"),
        ],
    )

    result = build_retention_cohorts(events, as_of_date=date(2026, 3, 31))

    assert_df_equality(
        result,
        RETENTION_COLUMNS,
        [
            ("kuaishou", date(2026, 3, 1), 1, 1, 0, 0.0),
            ("kuaishou", date(2026, 3, 1), 7, 1, 0, 0.0),
            ("kuaishou", date(2026, 3, 1), 14, 1, 0, 0.0),
            ("kuaishou", date(2026, 3, 1), 30, 1, 1, 1.0),
        ],
    )


def test_retention_custom_day_offsets(spark):
    events = silver_events(
        spark,
        [
            ev("j-u1", "join", WX, "u1", utc(2026, 3, 1, 2), date(2026, 3, 1), group_id="g1"),
            ev("l-u1", "like", WX, "u1", utc(2026, 3, 3, 2), date(2026, 3, 3)),
        ],
    )

    result = build_retention_cohorts(events, as_of_date=date(2026, 3, 3), day_offsets=(2, 3))

    assert_df_equality(
        result, RETENTION_COLUMNS, [("wechat", date(2026, 3, 1), 2, 1, 1, 1.0)]
    )


# --- member_lifetime ----------------------------------------------------------------------


@pytest.mark.parametrize("last_active", ["computed inside", "handed in"])
def test_member_lifetime_interpolated_median_and_cohort_month(spark, last_active):
    events = silver_events(
        spark,
        [
            # u1: joins 00:30 local on 1 March (UTC still February): March cohort, lifetime 1.
            ev("j-u1", "join", WX, "u1", utc(2026, 2, 28, 16, 30), date(2026, 3, 1), group_id="g1"),
            ev("l-u1", "like", WX, "u1", utc(2026, 3, 2, 2), date(2026, 3, 2)),
            # u2: 5 March -> 7 March, lifetime 2.
            ev("j-u2", "join", WX, "u2", utc(2026, 3, 5, 2), date(2026, 3, 5), group_id="g1"),
            ev("l-u2", "like", WX, "u2", utc(2026, 3, 7, 2), date(2026, 3, 7)),
            # u3: first join 10 March (a second on 12 March), last event 14 March: lifetime 4.
            ev("j-u3", "join", WX, "u3", utc(2026, 3, 10, 2), date(2026, 3, 10), group_id="g1"),
            ev("j-u3-2", "join", WX, "u3", utc(2026, 3, 12, 2), date(2026, 3, 12), group_id="g2"),
            ev("s-u3", "share", WX, "u3", utc(2026, 3, 14, 2), date(2026, 3, 14)),
            # u4: 20 March -> 30 March, lifetime 10; the 2 April event is after as_of_date.
            ev("j-u4", "join", WX, "u4", utc(2026, 3, 20, 2), date(2026, 3, 20), group_id="g1"),
            ev("l-u4", "like", WX, "u4", utc(2026, 3, 30, 2), date(2026, 3, 30)),
            ev("l-u4-late", "like", WX, "u4", utc(2026, 4, 2, 2), date(2026, 4, 2)),
            # u5: joins 23:00 local on 28 February: February cohort; an earlier like does not
            # start the lifetime; 28 Feb -> 3 March 2026 is 3 days.
            ev("l-u5-early", "like", WX, "u5", utc(2026, 2, 20, 2), date(2026, 2, 20)),
            ev("j-u5", "join", WX, "u5", utc(2026, 2, 28, 15), date(2026, 2, 28), group_id="g1"),
            ev("l-u5", "like", WX, "u5", utc(2026, 3, 3, 2), date(2026, 3, 3)),
            # u7: Kuaishou member with no later Kuaishou activity: lifetime 0 (the WeChat like
            # is another platform; without a WeChat join u7 is no WeChat member).
            ev("j-u7", "join", KS, "u7", utc(2026, 3, 3, 2), date(2026, 3, 3), group_id="k1"),
            ev("l-u7-wx", "like", WX, "u7", utc(2026, 3, 20, 2), date(2026, 3, 20)),
            # u8: joins after as_of_date: not a member yet.
            ev("j-u8", "join", WX, "u8", utc(2026, 4, 1, 2), date(2026, 4, 1), group_id="g1"),
        ],
    )

    # A caller that builds group_health too hands in the last active dates it computed once.
    handed = last_active_dates(events, as_of_date=date(2026, 3, 31)) if last_active == "handed in" else None
    result = build_member_lifetime(events, as_of_date=date(2026, 3, 31), last_active=handed)

    assert_df_equality(
        result,
        MEMBER_LIFETIME_COLUMNS,
        [
            ("kuaishou", date(2026, 3, 1), 1, 0.0, 0.0),
            ("wechat", date(2026, 2, 1), 1, 3.0, 3.0),
            # Lifetimes 1, 2, 4, 10: mean 17 / 4, median (2 + 4) / 2.
            ("wechat", date(2026, 3, 1), 4, 4.25, 3.0),
        ],
    )
