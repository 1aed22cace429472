"""Gold as of D from an earlier gold (as of P <= D) and what silver changed since (pure).

A daily run recomputes only the gold rows that the changed silver rows, or the step from P to
D, can reach, and carries every other row forward from the earlier build. Which rows a change
on event date ``e`` can reach (DESIGN section 5; windows are 24-hour multiples of
``event_time``, so a window that starts on date c ends on date c + days, or c + days + 1
across a daylight-saving change):

* ``daily_engagement``: the row of date e; new at D: the dates P+1 .. D.
* ``join_conversion``: cohorts e-8 .. e for the windows that reach e, and, because a join ends
  every later content attempt of its (user, group), every cohort from e-8 on; new at D: cohorts
  P-6 .. D-7. So cohorts from ``min(e) - 8`` (or P-6) on are recomputed, over the events from
  that date plus each (user, group)'s first join before it ("already a member" needs only that).
* ``retention_cohorts``: an event on e is activity for the rows whose day (``cohort_date + N``)
  is e, and a join can move its user's cohort (first join) only between two dates at or after
  e; new at D: the rows whose day is P+1 .. D. So every row of the cohorts from ``min(e)`` on,
  and each row whose day is a changed date or one of P+1 .. D, is recomputed (a few cohorts
  whole and four rows a day, where a late event used to recompute 30 cohorts), over the history
  summary's joins from the first of those cohorts (``min(e) - 30`` or P-29), each user's first
  join before it (which puts the users of earlier cohorts where they belong), and the activity
  of the days those rows look at.
* ``cross_platform_propagation``: a like on e, or a share on e that answers a like of e-2 .. e;
  the same for the events of accounts whose person changed (a late identity link); new at D:
  like dates P .. D-1. Recomputed over the events of those dates and the two after.
* ``member_lifetime``, ``group_health`` (every row has its 7/14-day windows at D),
  ``group_survival`` and ``cross_platform_overlap``: computed whole, but from silver's *history
  summary* (:func:`history_summary`, kept per event date beside silver) rather than from every
  event: these four tables, the recomputed retention cohorts and the first joins before a
  recomputed cohort read only joins, the dates each user was active and the dates each group
  had a like or share.

A full refresh (no earlier gold, or silver rebuilt since) computes every table whole.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core.silver_log import Changes
from core.tables import CONVERSION_WINDOW_DAYS, RETENTION_DAY_OFFSETS
from jobs.gold import build_gold_tables
from jobs.gold_cross_platform import build_cross_platform_overlap, build_cross_platform_propagation
from jobs.gold_engagement import (
    RetentionRows,
    build_daily_engagement,
    build_join_conversion,
    build_member_lifetime,
    build_retention_cohorts,
    last_active_dates,
)
from jobs.gold_groups import build_group_health, build_group_survival
from jobs.silver import person_of, with_person

# A window of N 24-hour days that starts on date c ends on c + N, or c + N + 1 across a DST change.
_DST_SLACK = 1
_PROPAGATION_REACH = 1 + _DST_SLACK  # a share answers a like of the same date or up to 2 before


def _days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def _changed(changes: Changes, as_of: date) -> set[date]:
    return {d for d in changes.dates if d <= as_of}


def daily_dates(changes: Changes, base_as_of: date, as_of: date) -> set[date]:
    """The ``daily_engagement`` dates to recompute."""
    return _changed(changes, as_of) | _days(base_as_of + timedelta(days=1), as_of)


def conversion_start(changes: Changes, base_as_of: date, as_of: date) -> date:
    """The first ``join_conversion`` cohort to recompute."""
    starts = [base_as_of - timedelta(days=CONVERSION_WINDOW_DAYS - 1)]
    changed = _changed(changes, as_of)
    if changed:
        starts.append(min(changed) - timedelta(days=CONVERSION_WINDOW_DAYS + _DST_SLACK))
    return min(starts)


def retention_rows(changes: Changes, base_as_of: date, as_of: date) -> RetentionRows:
    """The ``retention_cohorts`` rows to recompute.

    A changed join can move its user's cohort (first join) only between two dates at or after
    its own, so every row of the cohorts from the first changed date on; and each row whose day
    is a changed date (its activity) or a day that is over since ``base_as_of`` (a new row)."""
    changed = _changed(changes, as_of)
    return RetentionRows(min(changed, default=None), frozenset(changed | _days(base_as_of + timedelta(days=1), as_of)))


def propagation_dates(changes: Changes, base_as_of: date, as_of: date) -> set[date]:
    """The ``cross_platform_propagation`` like dates to recompute."""
    reached = _changed(changes, as_of) | {d for d in changes.identity_dates if d <= as_of}
    dates = {d - timedelta(days=k) for d in reached for k in range(_PROPAGATION_REACH + 1)}
    return {d for d in dates if d < as_of} | _days(base_as_of, as_of - timedelta(days=1))


def _propagation_reach(likes: set[date]) -> set[date]:
    """The dates whose events the propagation of ``likes`` reads (a like and its answers)."""
    return {d + timedelta(days=k) for d in likes for k in range(_PROPAGATION_REACH + 1)}


def event_dates_read(changes: Changes, base_as_of: date, as_of: date) -> set[date]:
    """The event dates :func:`update_gold_tables` reads stored events of, given a history
    summary: the rest of each table comes from the base or from the summary."""
    conversion = _days(conversion_start(changes, base_as_of, as_of), as_of)
    reach = _propagation_reach(propagation_dates(changes, base_as_of, as_of))
    return {d for d in daily_dates(changes, base_as_of, as_of) | conversion | reach if d <= as_of}


def _on(events: DataFrame, dates: set[date]) -> DataFrame:
    return events.where(F.col("event_date").isin(sorted(dates))) if dates else events.limit(0)


def _with_first_joins_before(
    events: DataFrame, history: DataFrame, start: date, as_of: date, key: list[str]
) -> DataFrame:
    """Events dated ``start`` .. ``as_of``, plus, for each ``key`` with a join dated before
    ``start`` (in ``history``: the events, or their :func:`history_summary`), one join at the
    time and date of the first of them, its other columns NULL.

    That is all a recomputed cohort asks of an earlier join: whether the user had joined the
    group before a like in the window ("already a member"), or whether the user's first join
    comes before the first recomputed cohort. An aggregate finds it without sorting every
    earlier join, as picking each key's first row would. Without its inviter, an earlier join
    cannot be attributed to an invitation (all of which are earlier still, in cohorts carried
    forward).
    """
    window = events.where((F.col("event_date") >= F.lit(start)) & (F.col("event_date") <= F.lit(as_of)))
    earlier = (
        history.where((F.col("event_date") < F.lit(start)) & (F.col("event_type") == "join"))
        .groupBy(*key)
        .agg(F.min("event_time").alias("event_time"), F.min("event_date").alias("event_date"))
    )
    return window.unionByName(_shaped_like(earlier, events, event_type=F.lit("join")))


def history_summary(events: DataFrame) -> DataFrame:
    """Stored silver events reduced to what the tables computed whole need, per event date.

    The rows keep the stored columns (NULL where a kind has no value): every ``join`` whole;
    one row per (``event_date``, ``platform``, ``user_id``) with any event, ``event_type``
    NULL ("the user was active that day"); and one row per (``event_date``, ``platform``,
    ``group_id``, ``event_type``) of the likes and shares that carry a ``group_id``,
    ``user_id`` NULL ("the group had one that day"). ``member_lifetime``, ``group_health``,
    ``group_survival`` and ``cross_platform_overlap`` use joins, the latest active date of a
    user and the first and last group-scoped date of a group only, ``retention_cohorts`` joins
    and the dates a user was active, and a NULL ``user_id`` matches no member, so they give the
    same rows from this as from the events; so does the first join of a (user, group) or user
    before a recomputed cohort. A summary of a date depends on that date's events only, so it
    is written with them: a date whose events are in several files (events that arrived later
    are added as a file of their own) has a summary file for each, and an activity or group row
    may then appear in more than one. Every use above takes a minimum, a maximum or distinct
    values of them, so a repeated row changes nothing (joins are events, never repeated).
    """
    dated = events.where(F.col("event_date").isNotNull())
    joins = dated.where(F.col("event_type") == "join")
    active_days = _shaped_like(dated.select("event_date", "platform", "user_id").distinct(), events)
    group_days = _shaped_like(
        dated.where(F.col("group_id").isNotNull() & F.col("event_type").isin("like", "share"))
        .select("event_date", "platform", "group_id", "event_type")
        .distinct(),
        events,
    )
    return joins.unionByName(active_days).unionByName(group_days)


# The columns of the history summary that gold reads: group_health takes a group's first join
# (ties to the smaller event_id) and its channel. The others, NULL on all but the joins, are
# left out of the cached copy (at 10M events, its 4M rows take 241 MiB instead of 344 MiB).
SUMMARY_READ = ("event_id", "event_type", "platform", "user_id", "event_time", "event_date", "group_id", "channel")


def cached_summary(summary: DataFrame) -> DataFrame:
    """``summary`` (a :func:`history_summary`) with only :data:`SUMMARY_READ`, cached."""
    return summary.select(*SUMMARY_READ).cache()


def _shaped_like(rows: DataFrame, events: DataFrame, **values: F.Column) -> DataFrame:
    """``rows`` with the columns of ``events``, in their order: its own where it has them,
    ``values`` where given, NULL of the column's type elsewhere."""

    def column(name: str) -> F.Column:
        if name in rows.columns:
            return F.col(name)
        return values.get(name, F.lit(None).cast(events.schema[name].dataType)).alias(name)

    return rows.select(*(column(name) for name in events.columns))


def _carry(base: DataFrame, fresh: DataFrame, recomputed: F.Column) -> DataFrame:
    """``fresh`` where ``recomputed`` holds, ``base`` elsewhere."""
    return fresh.where(recomputed).unionByName(base.where(~recomputed))


def update_gold_tables(
    events: DataFrame,
    identity_map: DataFrame,
    *,
    as_of_date: date,
    base: dict[str, DataFrame] | None = None,
    base_as_of: date | None = None,
    changes: Changes | None = None,
    history: DataFrame | None = None,
) -> dict[str, DataFrame]:
    """Every gold table as of ``as_of_date``: from ``base`` (gold as of ``base_as_of``) and the
    silver ``changes`` since, or whole when there is no base.

    ``events`` are stored silver events (without ``person_id``), any dates, or, when ``history``
    is given, at least those of :func:`event_dates_read`; ``identity_map`` is silver's;
    ``history`` is the :func:`history_summary` of all the events, at least its
    :data:`SUMMARY_READ` columns (computed from ``events`` when not given). The result equals
    :func:`jobs.gold.build_gold_tables` over the same silver.
    """
    if base is None or changes is None or changes.everything or base_as_of is None or base_as_of > as_of_date:
        return build_gold_tables(events, identity_map, as_of_date=as_of_date)
    as_of, cohort = as_of_date, F.col("cohort_date")
    known = events.where(F.col("event_date") <= F.lit(as_of))
    if history is None:
        history = cached_summary(history_summary(events))
    summary = history.where(F.col("event_date") <= F.lit(as_of))

    daily = daily_dates(changes, base_as_of, as_of)
    daily_engagement = _carry(
        base["daily_engagement"],
        build_daily_engagement(_on(known, daily), as_of_date=as_of),
        F.col("event_date").isin(sorted(daily)),
    )

    start = conversion_start(changes, base_as_of, as_of)
    conversion_input = _with_first_joins_before(known, summary, start, as_of, ["platform", "user_id", "group_id"])
    join_conversion = _carry(
        base["join_conversion"], build_join_conversion(conversion_input, as_of_date=as_of), cohort >= F.lit(start)
    )

    rows = retention_rows(changes, base_as_of, as_of)
    retention_cohorts = base["retention_cohorts"]
    if rows:
        # Retention reads joins and the days each user was active: the summary's rows say both.
        start = rows.first_cohort()
        retention_input = _with_first_joins_before(summary, summary, start, as_of, ["platform", "user_id"])
        retention_cohorts = _carry(
            retention_cohorts, build_retention_cohorts(retention_input, as_of_date=as_of, only=rows), rows.hold()
        )

    likes = propagation_dates(changes, base_as_of, as_of)
    reach = _propagation_reach(likes)
    propagation = _carry(
        base["cross_platform_propagation"],
        build_cross_platform_propagation(with_person(_on(known, reach), identity_map), identity_map, as_of_date=as_of),
        F.col("event_date").isin(sorted(likes)),
    )

    # Each account's last active date, read by two tables: computed once.
    last_active = last_active_dates(summary, as_of_date=as_of).cache()
    # Small (a few thousand rows): cached so that group_survival does not compute it again.
    group_health = build_group_health(summary, as_of_date=as_of, last_active=last_active).cache()
    joins = person_of(summary.where(F.col("event_type") == "join"), identity_map)
    return {
        "daily_engagement": daily_engagement,
        "join_conversion": join_conversion,
        "retention_cohorts": retention_cohorts,
        "member_lifetime": build_member_lifetime(summary, as_of_date=as_of, last_active=last_active),
        "group_health": group_health,
        "group_survival": build_group_survival(group_health),
        "cross_platform_propagation": propagation,
        "cross_platform_overlap": build_cross_platform_overlap(joins, as_of_date=as_of),
    }
