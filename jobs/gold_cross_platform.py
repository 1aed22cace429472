"""Gold ``cross_platform_propagation`` and ``cross_platform_overlap`` (DESIGN section 5, 7 and 8).

Interpretation choices, where the contract leaves room:

* Only events with ``event_date <= as_of_date`` are used; later ones are dropped first.
* Persons are silver's ``person_id`` (see ``jobs.identity``). A person "has a linked WeChat
  account" when ``identity_map`` holds at least one row with that ``person_id`` and platform
  ``wechat`` (an OpenID); a UnionID alone does not count.
* Propagation: the likes are the events with platform ``kuaishou`` and type ``like`` by such
  persons, each counted once (silver is deduplicated by ``event_id``). A like propagates when an
  event with platform ``wechat`` and type ``share`` by the same ``person_id`` for the same
  ``content_id`` has ``like.event_time <= share.event_time <= like.event_time + 24 hours``, both
  ends inclusive; the share's ``target_platform`` is not looked at. A like without a
  ``content_id`` cannot propagate but is still a like. Latency is the fractional number of
  seconds from the like to the earliest such share.
* One row per ``event_date`` of the likes (reporting-zone calendar day) with at least one like,
  emitted once ``event_date + 1 <= as_of_date`` so every 24-hour window of the day is over.
  Percentiles are Spark's exact ``percentile`` (linear interpolation between the closest ranks)
  over the latencies of that day's propagated likes, NULL when none propagated.
* Overlap: a person is a member on a platform when they have a ``join`` on that platform (to any
  group) up to ``as_of_date``. ``both`` counts persons who are members on both;
  ``overlap_rate = both / persons who are a member anywhere``, NULL when there are none. The
  table always has exactly one row.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core import tables
from core.tables import LATENCY_PERCENTILES, PROPAGATION_WINDOW_SECONDS
from jobs.expressions import rate
from jobs.schemas import conform

PROPAGATION_WINDOW_MICROS = PROPAGATION_WINDOW_SECONDS * 1_000_000


def build_cross_platform_propagation(
    events: DataFrame, identity_map: DataFrame, *, as_of_date: date
) -> DataFrame:
    """Per like day: Kuaishou likes by linked persons, how many were shared on WeChat within 24 h,
    and the latency percentiles of those shares."""
    as_of = F.lit(as_of_date)
    known = events.filter(F.col("event_date") <= as_of)

    linked_persons = (
        identity_map.filter(F.col("platform") == "wechat").select("person_id").distinct()
    )
    likes = (
        known.filter((F.col("platform") == "kuaishou") & (F.col("event_type") == "like"))
        .join(linked_persons, on="person_id", how="left_semi")
        .select(
            F.col("event_id").alias("like_event_id"),
            F.col("event_date").alias("like_date"),
            F.col("person_id"),
            F.col("content_id"),
            F.unix_micros(F.col("event_time")).alias("like_micros"),
        )
    )
    wechat_shares = known.filter(
        (F.col("platform") == "wechat")
        & (F.col("event_type") == "share")
        & F.col("content_id").isNotNull()
    ).select(
        F.col("person_id"),
        F.col("content_id"),
        F.unix_micros(F.col("event_time")).alias("share_micros"),
    )

    delay = F.col("share_micros") - F.col("like_micros")
    # A NULL content_id never satisfies the equality, so such a like keeps a NULL latency.
    like_latency = (
        likes.join(
            wechat_shares,
            on=["person_id", "content_id"],
            how="left",
        )
        .withColumn(
            "latency_micros",
            F.when((delay >= 0) & (delay <= PROPAGATION_WINDOW_MICROS), delay),
        )
        .groupBy("like_event_id", "like_date")
        .agg(F.min("latency_micros").alias("latency_micros"))
        .withColumn("latency_s", F.col("latency_micros").cast("double") / F.lit(1_000_000.0))
    )

    daily = (
        like_latency.filter(F.date_add(F.col("like_date"), 1) <= as_of)
        .groupBy("like_date")
        .agg(
            F.count(F.lit(1)).alias("likes"),
            F.count("latency_s").alias("propagated"),
            # percentile() skips NULLs, so only the propagated likes are ranked.
            F.percentile(F.col("latency_s"), list(LATENCY_PERCENTILES)).alias("latencies"),
        )
    )
    propagation = daily.select(
        F.col("like_date").alias("event_date"),
        "likes",
        "propagated",
        rate("propagated", "likes").alias("propagation_rate"),
        F.col("latencies").getItem(0).alias("latency_p50_s"),
        F.col("latencies").getItem(1).alias("latency_p90_s"),
        F.col("latencies").getItem(2).alias("latency_p99_s"),
    )
    return conform(propagation, tables.CROSS_PLATFORM_PROPAGATION)


def build_cross_platform_overlap(events: DataFrame, *, as_of_date: date) -> DataFrame:
    """One row: persons who joined a group on Kuaishou, on WeChat, on both, and the overlap rate."""
    as_of = F.lit(as_of_date)
    member_platforms = (
        events.filter((F.col("event_date") <= as_of) & (F.col("event_type") == "join"))
        .groupBy("person_id")
        .agg(
            F.max(F.col("platform") == "kuaishou").alias("on_kuaishou"),
            F.max(F.col("platform") == "wechat").alias("on_wechat"),
        )
    )
    # A global aggregate yields its one row even over no members (counts 0, rate NULL).
    totals = member_platforms.agg(
        F.count(F.when(F.col("on_kuaishou"), True)).alias("kuaishou_members"),
        F.count(F.when(F.col("on_wechat"), True)).alias("wechat_members"),
        F.count(F.when(F.col("on_kuaishou") & F.col("on_wechat"), True)).alias("both"),
        F.count(F.lit(1)).alias("members_anywhere"),
    )
    overlap = totals.withColumn("as_of_date", as_of).withColumn(
        "overlap_rate", rate("both", "members_anywhere")
    )
    return conform(overlap, tables.CROSS_PLATFORM_OVERLAP)
