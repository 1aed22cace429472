"""Which gold rows an incremental run recomputes (pure date arithmetic, no Spark)."""

from __future__ import annotations

from datetime import date, timedelta

from core.silver_log import Changes
from jobs.gold_engagement import RetentionRows
from jobs.gold_incremental import conversion_start, daily_dates, event_dates_read, propagation_dates, retention_rows

P = date(2026, 3, 20)  # the earlier gold
D = date(2026, 3, 22)  # this run


def _d(day: int) -> date:
    return date(2026, 3, day)


def test_nothing_changed_recomputes_only_what_the_new_as_of_date_emits():
    none = Changes()
    assert daily_dates(none, P, D) == {_d(21), _d(22)}
    assert conversion_start(none, P, D) == _d(14)  # cohorts 14..15 become due at D (c + 7 <= D)
    # The rows whose day is over since P: day 1 of cohort 03-20 .. day 30 of cohort 02-19.
    assert retention_rows(none, P, D) == RetentionRows(days=frozenset({_d(21), _d(22)}))
    assert retention_rows(none, P, D).first_cohort() == date(2026, 2, 19)
    assert propagation_dates(none, P, D) == {_d(20), _d(21)}  # like dates d with d + 1 <= D, new since P


def test_a_late_event_reaches_back_by_each_tables_longest_window():
    late = Changes(dates=frozenset({_d(10), _d(21)}))
    assert daily_dates(late, P, D) == {_d(10), _d(21), _d(22)}
    assert conversion_start(late, P, D) == _d(2)  # 7 days of window + 1 for a DST change
    # A late join moves a user between cohorts from 03-10 on; late activity is a day of 4 rows.
    assert retention_rows(late, P, D) == RetentionRows(_d(10), frozenset({_d(10), _d(21), _d(22)}))
    assert retention_rows(late, P, D).first_cohort() == date(2026, 2, 8)  # day 30 is 03-10
    assert propagation_dates(late, P, D) == {_d(8), _d(9), _d(10), _d(19), _d(20), _d(21)}


def test_changes_after_the_as_of_date_reach_nothing():
    future = Changes(dates=frozenset({D + timedelta(days=1)}), identity_dates=frozenset({D + timedelta(days=3)}))
    assert daily_dates(future, D, D) == set()
    assert conversion_start(future, D, D) == _d(16)
    assert propagation_dates(future, D, D) == set()
    assert not retention_rows(future, D, D)


def test_a_late_identity_link_reaches_the_propagation_rows_of_its_accounts_events():
    relinked = Changes(identity_dates=frozenset({_d(5)}))
    assert propagation_dates(relinked, D, D) == {_d(3), _d(4), _d(5)}
    assert daily_dates(relinked, D, D) == set()  # users are counted by user_id, not by person


def test_the_events_read_are_the_recomputed_rows_dates_and_those_their_windows_reach():
    def days(first: int, last: int) -> set[date]:
        return {_d(day) for day in range(first, last + 1)}

    # Conversion cohorts 14.. (their 7 days reach D); likes of 20 and 21 answered up to 23 (not yet).
    assert event_dates_read(Changes(), P, D) == days(14, 22)
    assert event_dates_read(Changes(dates=frozenset({_d(10), _d(21)})), P, D) == days(2, 22)
    # The events of a relinked account's dates, for propagation only; nothing between them and
    # the conversion cohorts, nothing before them.
    assert event_dates_read(Changes(identity_dates=frozenset({_d(5)})), D, D) == days(3, 7) | days(16, 22)


def test_changes_of_several_versions_add_up():
    both = Changes(dates=frozenset({_d(1)})) | Changes(identity_dates=frozenset({_d(2)}), everything=True)
    assert (both.dates, both.identity_dates, both.everything) == (frozenset({_d(1)}), frozenset({_d(2)}), True)
