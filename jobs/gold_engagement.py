"""Gold engagement tables (DESIGN section 5, tables 1-4) as pure transforms over silver events.

Every builder first drops events with ``event_date > as_of_date``; nothing below sees them.
``event_time`` is a UTC instant, ``event_date`` the reporting-zone calendar date (section 4).

Interpretation choices (an independent implementation is compared row by row):

* A "day" inside a window is 24 hours of ``event_time`` (compared in microseconds since the
  epoch, so DST or the session zone cannot shift it); both ends are inclusive, so a join
  exactly ``window_days * 24 h`` after its invitation or first like counts, one second later
  does not. Cohort suppression (``cohort_date + window_days <= as_of_date``) and retention
  offsets (``cohort_date + N``) are calendar-day arithmetic on dates.
* ``daily_engagement``: every day up to ``as_of_date``; ``users`` = distinct ``user_id``.
* ``join_conversion`` / invite: an invitation is a ``share`` with a ``group_id``; its platform is
  the platform it was made on (``target_platform`` is ignored) and its ``cohort_date`` is its
  ``event_date``. A ``join`` with an ``inviter_user_id`` is attributed to the invitation with the
  same platform, ``group_id`` and inviter (= the share's ``user_id``) made at or before the join
  and at most ``window_days`` before it; the latest such invitation wins, ties on
  ``event_time`` go to the smallest ``event_id`` (string order). An invitation converts when
  at least one join is attributed to it; the join's ``channel`` plays no part.
* ``join_conversion`` / content: one attempt per (platform, user, group, ``event_date``) of
  ``like`` events carrying a ``group_id``, timed at the first such like that day; it is not an
  attempt when the user joined that group on that platform strictly before that first like
  (a join at the very same instant leaves it an attempt). It converts on a join to the group
  (same platform) in ``[first_like, first_like + window_days]``.
* ``join_conversion`` rows: only for cohorts with ``cohort_date + window_days <= as_of_date`` and
  at least one attempt; ``conversion_rate`` is NULL only if there were no attempts.
* ``retention_cohorts``: cohort = ``event_date`` of the user's first join on a platform; retained
  on day N if the same (platform, ``user_id``) has any event on ``cohort_date + N``. A row for
  every cohort and every N with ``cohort_date + N <= as_of_date``, zero retention included.
* ``member_lifetime``: per (platform, user) with a join, ``datediff(last event_date on that
  platform, first join event_date)``; users grouped by the first day of the month of the first
  join. Not suppressed: lifetimes are "so far, up to ``as_of_date``". The median is Spark's
  exact ``percentile(x, 0.5)`` (linear interpolation between the two middle values).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from core import tables
from core.tables import CONVERSION_WINDOW_DAYS, RETENTION_DAY_OFFSETS
from jobs.expressions import rate
from jobs.schemas import conform

_MICROS_PER_DAY = 86_400 * 1_000_000


def _up_to(events: DataFrame, as_of_date: date) -> DataFrame:
    """Events a run for ``as_of_date`` may use."""
    return events.where(F.col("event_date") <= F.lit(as_of_date))


def _within_days(start_micros: Column, end_micros: Column, window_days: int) -> Column:
    """``start <= end <= start + window_days * 24 h`` on event-time instants."""
    return (start_micros <= end_micros) & (
        end_micros - start_micros <= F.lit(window_days * _MICROS_PER_DAY)
    )


def build_daily_engagement(events: DataFrame, *, as_of_date: date) -> DataFrame:
    """Events and distinct users per platform, calendar day and event type, up to ``as_of_date``."""
    daily = (
        _up_to(events, as_of_date)
        .groupBy("platform", "event_date", "event_type")
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.count_distinct("user_id").alias("users"),
        )
    )
    return conform(daily, tables.DAILY_ENGAGEMENT)


def _invitation_outcomes(scoped: DataFrame, *, window_days: int) -> DataFrame:
    """One row per invitation: ``platform``, ``cohort_date``, ``invite_event_id``, ``converted``."""
    invitations = scoped.where(
        (F.col("event_type") == "share") & F.col("group_id").isNotNull()
    ).select(
        "platform",
        "group_id",
        F.col("event_id").alias("invite_event_id"),
        F.col("user_id").alias("inviter_user_id"),
        F.col("event_date").alias("cohort_date"),
        F.unix_micros("event_time").alias("invite_micros"),
    )
    invited_joins = scoped.where(
        (F.col("event_type") == "join") & F.col("inviter_user_id").isNotNull()
    ).select(
        "platform",
        "group_id",
        "inviter_user_id",
        F.col("event_id").alias("join_event_id"),
        F.unix_micros("event_time").alias("join_micros"),
    )
    # Last touch: each join goes to exactly one invitation, the latest one in its window.
    last_touch = Window.partitionBy("platform", "join_event_id").orderBy(
        F.col("invite_micros").desc(), F.col("invite_event_id").asc()
    )
    converted_invitations = (
        invited_joins.join(
            invitations, on=["platform", "group_id", "inviter_user_id"], how="inner"
        )
        .where(_within_days(F.col("invite_micros"), F.col("join_micros"), window_days))
        .withColumn("touch_rank", F.row_number().over(last_touch))
        .where(F.col("touch_rank") == 1)
        .select("platform", "invite_event_id", F.lit(True).alias("converted"))
        .distinct()
    )
    return invitations.join(
        converted_invitations, on=["platform", "invite_event_id"], how="left"
    ).select(
        "platform",
        "cohort_date",
        "invite_event_id",
        F.coalesce(F.col("converted"), F.lit(False)).alias("converted"),
    )


def _content_outcomes(scoped: DataFrame, *, window_days: int) -> DataFrame:
    """One row per content attempt: ``platform``, ``cohort_date``, ``converted``."""
    first_likes = (
        scoped.where((F.col("event_type") == "like") & F.col("group_id").isNotNull())
        .groupBy("platform", "user_id", "group_id", "event_date")
        .agg(F.min(F.unix_micros("event_time")).alias("like_micros"))
    )
    group_joins = scoped.where(
        (F.col("event_type") == "join") & F.col("group_id").isNotNull()
    ).select("platform", "user_id", "group_id", F.unix_micros("event_time").alias("join_micros"))
    # A left join keeps likes with no join at all; the NULL comparisons then count as false.
    joined_before = F.coalesce(F.col("join_micros") < F.col("like_micros"), F.lit(False))
    joined_in_window = F.coalesce(
        _within_days(F.col("like_micros"), F.col("join_micros"), window_days), F.lit(False)
    )
    return (
        first_likes.join(group_joins, on=["platform", "user_id", "group_id"], how="left")
        .groupBy("platform", "user_id", "group_id", "event_date")
        .agg(
            F.bool_or(joined_before).alias("already_member"),
            F.bool_or(joined_in_window).alias("converted"),
        )
        .where(~F.col("already_member"))
        .select("platform", F.col("event_date").alias("cohort_date"), "converted")
    )


def build_join_conversion(
    events: DataFrame, *, as_of_date: date, window_days: int = CONVERSION_WINDOW_DAYS
) -> DataFrame:
    """Invite and content join conversion per platform and cohort day, once the window is over."""
    scoped = _up_to(events, as_of_date)
    invite = _invitation_outcomes(scoped, window_days=window_days).select(
        "platform", "cohort_date", F.lit("invite").alias("funnel"), "converted"
    )
    content = _content_outcomes(scoped, window_days=window_days).select(
        "platform", "cohort_date", F.lit("content").alias("funnel"), "converted"
    )
    conversion = (
        invite.unionByName(content)
        .where(F.date_add(F.col("cohort_date"), window_days) <= F.lit(as_of_date))
        .groupBy("platform", "cohort_date", "funnel")
        .agg(
            F.count(F.lit(1)).alias("attempts"),
            F.count(F.when(F.col("converted"), F.lit(1))).alias("conversions"),
        )
        .withColumn("conversion_rate", rate("conversions", "attempts"))
    )
    return conform(conversion, tables.JOIN_CONVERSION)


def _first_joins(scoped: DataFrame) -> DataFrame:
    """``platform``, ``user_id``, ``cohort_date`` = event_date of the user's first join there."""
    return (
        scoped.where(F.col("event_type") == "join")
        .groupBy("platform", "user_id")
        .agg(F.min("event_date").alias("cohort_date"))
    )


@dataclass(frozen=True)
class RetentionRows:
    """Some rows of ``retention_cohorts``: every row of the cohorts from ``cohorts_from`` on
    (none when None), and each row whose day, ``cohort_date + day_offset``, is one of ``days``."""

    cohorts_from: date | None = None
    days: frozenset[date] = frozenset()

    def __bool__(self) -> bool:
        return self.cohorts_from is not None or bool(self.days)

    def first_cohort(self, day_offsets: tuple[int, ...] = RETENTION_DAY_OFFSETS) -> date | None:
        """The earliest cohort with a row among them."""
        firsts = [day - timedelta(days=max(day_offsets)) for day in self.days]
        if self.cohorts_from is not None:
            firsts.append(self.cohorts_from)
        return min(firsts, default=None)

    def hold(self) -> Column:
        """Whether a row (``cohort_date``, ``day_offset``) is one of them."""
        return self._day_or_cohort(F.date_add(F.col("cohort_date"), F.col("day_offset")), F.col("cohort_date"))

    def days_looked_at(self) -> Column:
        """Whether an ``event_date`` is a day one of them looks at (a superset: the rows of a
        cohort from ``cohorts_from`` on look at days from that date on)."""
        return self._day_or_cohort(F.col("event_date"), F.col("event_date"))

    def _day_or_cohort(self, day: Column, cohort: Column) -> Column:
        """``day`` is one of ``days``, or ``cohort`` is ``cohorts_from`` or later."""
        either = day.isin(sorted(self.days))
        if self.cohorts_from is not None:
            either = either | (cohort >= F.lit(self.cohorts_from))
        return either


def build_retention_cohorts(
    events: DataFrame,
    *,
    as_of_date: date,
    day_offsets: tuple[int, ...] = RETENTION_DAY_OFFSETS,
    only: RetentionRows | None = None,
) -> DataFrame:
    """Day-N retention of each platform's join cohorts, for every day N that is already over.

    With ``only``, just those rows (a caller that carries the others forward): every join is
    still read (a user whose first join is earlier is in none of the later cohorts), but only
    the activity of the days those rows look at."""
    scoped = _up_to(events, as_of_date)
    offsets = F.array(*[F.lit(int(n)) for n in day_offsets]).cast("array<int>")
    cohorts = _first_joins(scoped)
    active = scoped
    if only is not None:
        first = only.first_cohort(day_offsets)
        if first is not None:  # none: no row is one of them (``hold`` below)
            cohorts = cohorts.where(F.col("cohort_date") >= F.lit(first))
        active = scoped.where(only.days_looked_at())
    member_days = (
        cohorts.withColumn("day_offset", F.explode(offsets))
        .withColumn("activity_date", F.date_add(F.col("cohort_date"), F.col("day_offset")))
        .where(F.col("activity_date") <= F.lit(as_of_date))
    )
    if only is not None:
        member_days = member_days.where(only.hold())
    active_days = (
        active.select("platform", "user_id", F.col("event_date").alias("activity_date"))
        .distinct()
        .withColumn("active", F.lit(True))
    )
    retention = (
        member_days.join(active_days, on=["platform", "user_id", "activity_date"], how="left")
        .groupBy("platform", "cohort_date", "day_offset")
        .agg(
            F.count(F.lit(1)).alias("cohort_users"),
            F.count("active").alias("retained_users"),
        )
        .withColumn("retention_rate", rate("retained_users", "cohort_users"))
    )
    return conform(retention, tables.RETENTION_COHORTS)


def last_active_dates(events: DataFrame, *, as_of_date: date) -> DataFrame:
    """``platform``, ``user_id``, ``last_active_date``: each account's latest ``event_date`` up
    to ``as_of_date``. ``member_lifetime`` and ``group_health`` both read it, so a caller that
    builds both computes it once and hands it to each."""
    return (
        _up_to(events, as_of_date)
        .where(F.col("user_id").isNotNull())
        .groupBy("platform", "user_id")
        .agg(F.max("event_date").alias("last_active_date"))
    )


def build_member_lifetime(
    events: DataFrame, *, as_of_date: date, last_active: DataFrame | None = None
) -> DataFrame:
    """Average and exact median member lifetime in days, per platform and join-cohort month
    (``last_active``: :func:`last_active_dates` of the same events, when already computed)."""
    scoped = _up_to(events, as_of_date)
    if last_active is None:
        last_active = last_active_dates(events, as_of_date=as_of_date)
    lifetime = (
        _first_joins(scoped)
        .join(last_active, on=["platform", "user_id"], how="inner")
        .select(
            "platform",
            F.trunc(F.col("cohort_date"), "month").alias("cohort_month"),
            F.datediff(F.col("last_active_date"), F.col("cohort_date")).alias("lifetime_days"),
        )
        .groupBy("platform", "cohort_month")
        .agg(
            F.count(F.lit(1)).alias("users"),
            F.avg("lifetime_days").alias("avg_lifetime_days"),
            F.percentile(F.col("lifetime_days"), 0.5).alias("median_lifetime_days"),
        )
    )
    return conform(lifetime, tables.MEMBER_LIFETIME)
