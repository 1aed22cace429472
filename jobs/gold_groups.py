"""Gold ``group_health`` and ``group_survival`` (DESIGN section 5, tables 5 and 6).

Interpretation choices, where the contract leaves room:

* Only events with ``event_date <= as_of_date`` are used; later ones (a re-run for an earlier
  date over newer input) are dropped first.
* A group is identified by ``(platform, group_id)``: the same ``group_id`` on the two platforms
  is two groups. Its group-scoped events are the joins naming it plus the likes and shares
  carrying its ``group_id``, on its platform. There is one row per group with at least one
  group-scoped event up to ``as_of_date``, including groups nobody has joined yet (then
  ``members`` and the member counts are 0 and ``origin_channel`` is NULL).
* ``origin_channel`` is the ``channel`` of the group's earliest join by ``event_time``; ties go
  to the smallest ``event_id``.
* ``members`` are the distinct ``user_id``s that ever joined the group (up to ``as_of_date``);
  leaving is not an event, so a member stays a member.
* A member is active in a window when they have any event on the group's platform (any type, in
  any group or none) whose ``event_date`` falls in it: 7 days = ``as_of_date - 6 ..
  as_of_date``, 14 days = ``as_of_date - 13 .. as_of_date``, calendar days in the reporting
  zone. ``silent_members_7d = members - active_members_7d``; ``inactive_members_14d`` are the
  members with no event in the 14-day window.
* ``alive_30d`` is NULL while ``as_of_date < first_event_date + 30``; otherwise true when a
  group-scoped event has ``event_date >= first_event_date + 30`` (and, like every event used,
  ``<= as_of_date``), false when none has.
* ``group_survival`` counts the ``group_health`` rows whose ``alive_30d`` is not NULL, by
  ``platform``, ``origin_channel`` (NULL, a group with no join, is a group of its own) and
  ``cohort_month`` (first day of the month of ``first_event_date``).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core import tables
from core.tables import ACTIVE_WINDOW_DAYS, INACTIVE_WINDOW_DAYS, SURVIVAL_DAYS
from jobs.expressions import rate
from jobs.gold_engagement import last_active_dates
from jobs.schemas import conform

GROUP_KEY = ["platform", "group_id"]


def build_group_health(
    events: DataFrame, *, as_of_date: date, last_active: DataFrame | None = None
) -> DataFrame:
    """One row per (``platform``, ``group_id``) with a group-scoped event up to ``as_of_date``
    (``last_active``: :func:`jobs.gold_engagement.last_active_dates` of the same events, when
    already computed)."""
    as_of = F.lit(as_of_date)
    known = events.filter(F.col("event_date") <= as_of)

    group_scoped = known.filter(
        F.col("group_id").isNotNull() & F.col("event_type").isin("join", "like", "share")
    )
    group_span = group_scoped.groupBy(*GROUP_KEY).agg(
        F.min("event_date").alias("first_event_date"),
        F.max("event_date").alias("last_event_date"),
    )

    joins = group_scoped.filter(F.col("event_type") == "join")
    # The smallest (event_time, event_id) struct is the earliest join, ties to the smaller id.
    origin = joins.groupBy(*GROUP_KEY).agg(
        F.min(F.struct("event_time", "event_id", "channel")).getField("channel").alias(
            "origin_channel"
        )
    )

    # Events are cut at as_of_date, so "any event in the window" is "last event in it".
    if last_active is None:
        last_active = last_active_dates(events, as_of_date=as_of_date)
    active_since = F.date_sub(as_of, ACTIVE_WINDOW_DAYS - 1)
    inactive_before = F.date_sub(as_of, INACTIVE_WINDOW_DAYS - 1)
    member_activity = (
        joins.select(*GROUP_KEY, "user_id")
        .distinct()
        .join(last_active, on=["platform", "user_id"], how="inner")
        .groupBy(*GROUP_KEY)
        .agg(
            F.count(F.lit(1)).alias("members"),
            F.count(F.when(F.col("last_active_date") >= active_since, True)).alias(
                "active_members_7d"
            ),
            F.count(F.when(F.col("last_active_date") < inactive_before, True)).alias(
                "inactive_members_14d"
            ),
        )
    )

    survival_due = F.date_add(F.col("first_event_date"), SURVIVAL_DAYS)
    members = F.coalesce(F.col("members"), F.lit(0))
    active_7d = F.coalesce(F.col("active_members_7d"), F.lit(0))
    health = (
        group_span.join(origin, on=GROUP_KEY, how="left")
        .join(member_activity, on=GROUP_KEY, how="left")
        .select(
            F.col("platform"),
            F.col("group_id"),
            as_of.alias("as_of_date"),
            F.col("origin_channel"),
            F.col("first_event_date"),
            F.col("last_event_date"),
            members.cast("long").alias("members"),
            active_7d.cast("long").alias("active_members_7d"),
            (members - active_7d).cast("long").alias("silent_members_7d"),
            F.coalesce(F.col("inactive_members_14d"), F.lit(0)).cast("long").alias(
                "inactive_members_14d"
            ),
            # last_event_date is the latest group-scoped event <= as_of_date.
            F.when(as_of < survival_due, F.lit(None).cast("boolean"))
            .otherwise(F.col("last_event_date") >= survival_due)
            .alias("alive_30d"),
        )
    )
    return conform(health, tables.GROUP_HEALTH)


def build_group_survival(group_health: DataFrame) -> DataFrame:
    """30-day survival of the groups whose 30 days are over, by platform, channel and month."""
    groups = F.count(F.lit(1))
    survived = F.count(F.when(F.col("alive_30d"), True))
    survival = (
        group_health.filter(F.col("alive_30d").isNotNull())
        .withColumn("cohort_month", F.trunc(F.col("first_event_date"), "month"))
        .groupBy("platform", "origin_channel", "cohort_month")
        .agg(groups.alias("groups"), survived.alias("survived_30d"))
        # groups >= 1 in every output row; the guard keeps the NULL-on-zero rule explicit.
        .withColumn("survival_rate_30d", rate("survived_30d", "groups"))
    )
    return conform(survival, tables.GROUP_SURVIVAL)
