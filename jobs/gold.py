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
from jobs.silver import with_person


def build_gold_tables(events: DataFrame, identity_map: DataFrame, *, as_of_date: date) -> dict[str, DataFrame]:
    """Every gold table as of ``as_of_date``, by name, in the order of ``core.tables.GOLD``.

    ``events`` are stored silver events, without ``person_id``: only the two cross-platform
    tables count persons, and only they join it on from ``identity_map``. Spark cannot drop that
    left join where a table counts rows, so such a table given the joined events would shuffle
    every event to join it.
    """
    persons = with_person(events, identity_map)
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
        "cross_platform_propagation": build_cross_platform_propagation(persons, identity_map, as_of_date=as_of_date),
        "cross_platform_overlap": build_cross_platform_overlap(persons, as_of_date=as_of_date),
    }
