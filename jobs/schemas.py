"""Schemas of the silver tables: the contract between the silver job and the gold builders."""

from __future__ import annotations

from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType

# silver.events: valid, deduplicated engagement events.
# event_time is the UTC instant (the session time zone is UTC); event_date is the calendar
# date of event_time in the reporting time zone (DESIGN section 4).
SILVER_EVENTS = StructType(
    [
        StructField("event_id", StringType(), False),
        StructField("event_type", StringType(), False),  # like | share | join
        StructField("platform", StringType(), False),  # kuaishou | wechat
        StructField("user_id", StringType(), False),
        StructField("event_time", TimestampType(), False),
        StructField("event_date", DateType(), False),
        StructField("content_id", StringType(), True),
        StructField("group_id", StringType(), True),
        StructField("channel", StringType(), True),
        StructField("inviter_user_id", StringType(), True),
        StructField("target_platform", StringType(), True),
        StructField("person_id", StringType(), False),
    ]
)

# silver.identity_map: every account, linked or not, in exactly one person.
# platform is "kuaishou" (Kuaishou user id), "wechat" (OpenID) or "wechat_unionid" (UnionID).
IDENTITY_MAP = StructType(
    [
        StructField("person_id", StringType(), False),
        StructField("platform", StringType(), False),
        StructField("user_id", StringType(), False),
    ]
)
