"""All eight gold tables of one logical date from silver (pure: no IO, no session)."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame

from jobs.gold_cross_platform import build_cross_platform_overlap, build_cross_platform_propagation
from jobs.gold_engagement import (
    build_daily_engagement,
    build_join_conversion,
    build_member_lifetime,
    build_retention_cohorts,
    last_active_dates,
)
from jobs.gold_groups import build_group_health, build_group_survival


def build_gold_tables(events: DataFrame, identity_map: DataFrame, *, as_of_date: date) -> dict[str, DataFrame]:
    """Every gold table as of ``as_of_date``, by name, in the order of ``core.tables.GOLD``."""
    # Each account's last active date, read by two tables: computed once.
    last_active = last_active_dates(events, as_of_date=as_of_date).cache()
    # Small (a few thousand rows): cached so that group_survival does not compute it again.
    group_health = build_group_health(events, as_of_date=as_of_date, last_active=last_active).cache()
    return {
        "daily_engagement": build_daily_engagement(events, as_of_date=as_of_date),
        "join_conversion": build_join_conversion(events, as_of_date=as_of_date),
        "retention_cohorts": build_retention_cohorts(events, as_of_date=as_of_date),
        "member_lifetime": build_member_lifetime(events, as_of_date=as_of_date, last_active=last_active),
        "group_health": group_health,
        "group_survival": build_group_survival(group_health),
        "cross_platform_propagation": build_cross_platform_propagation(events, identity_map, as_of_date=as_of_date),
        "cross_platform_overlap": build_cross_platform_overlap(events, as_of_date=as_of_date),
    }
