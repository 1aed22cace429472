"""Silver: typed, deduplicated events with reporting-zone dates and person ids.

* ``event_time`` (RFC 3339, either offset style) becomes a UTC instant; ``event_date`` is its
  calendar date in the reporting time zone.
* A repeated ``event_id`` is a redelivery and counts once: the copy with the smallest
  (topic, partition, offset) is kept, so the choice does not depend on arrival order of runs.
* Only events with ``event_date <= as_of_date`` are used, so re-running a date over the same
  input gives the same rows even after later events have arrived.
* Every identity link is used, whatever its ``linked_at``: DESIGN bounds events by
  ``as_of_date``, not links, and a person is the same person on every date. A link that arrives
  late therefore corrects earlier rows the way a late event does.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from core import tables
from jobs.identity import build_identity_map
from jobs.schemas import conform


def local_date(timestamp_col: str, timezone: str):
    """The calendar date of a UTC instant in ``timezone``."""
    return F.to_date(F.from_utc_timestamp(F.col(timestamp_col), timezone))


def typed_events(bronze_events: DataFrame, *, timezone: str, as_of_date: date) -> DataFrame:
    """Bronze events typed and deduplicated by ``event_id``, up to ``as_of_date``."""
    first_copy = Window.partitionBy("event_id").orderBy("kafka_topic", "kafka_partition", "kafka_offset")
    return (
        bronze_events.withColumn("_copy", F.row_number().over(first_copy))
        .filter(F.col("_copy") == 1)
        # RFC 3339 allows "t" and "z"; Spark's cast only reads upper case (and under ANSI mode
        # fails the whole job otherwise). Upper-casing touches nothing else in the string.
        .withColumn("event_time", F.upper("event_time").cast("timestamp"))
        .filter(F.col("event_time").isNotNull())
        .withColumn("event_date", local_date("event_time", timezone))
        .filter(F.col("event_date") <= F.lit(as_of_date))
        .select(
            "event_id",
            "event_type",
            "platform",
            "user_id",
            "event_time",
            "event_date",
            "content_id",
            "group_id",
            "channel",
            "inviter_user_id",
            "target_platform",
        )
    )


def build_silver(
    bronze_events: DataFrame, bronze_identity: DataFrame, *, timezone: str, as_of_date: date
) -> tuple[DataFrame, DataFrame]:
    """Silver ``events`` and ``identity_map`` from bronze, as of ``as_of_date``."""
    events = typed_events(bronze_events, timezone=timezone, as_of_date=as_of_date)
    links = bronze_identity.select("link_id", "kuaishou_user_id", "wechat_openid", "wechat_unionid", "linked_at")
    accounts = events.select("platform", "user_id").distinct()
    identity_map = build_identity_map(accounts, links)
    with_person = events.join(identity_map, on=["platform", "user_id"], how="left")
    return conform(with_person, tables.SILVER_EVENTS), identity_map
