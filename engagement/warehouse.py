"""Where each layer lives under the warehouse folder, and which gold dates are published.

    bronze/events, bronze/identity, quarantine      written by the loader
    silver/<table>/as_of_date=D                      a run's silver
    staging/gold/<table>/as_of_date=D                gold before its quality gate
    gold/<table>/as_of_date=D                        published gold (moved from staging)
    published/D.json                                 the publication record (row counts)
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

GOLD_TABLES = (
    "daily_engagement",
    "join_conversion",
    "retention_cohorts",
    "member_lifetime",
    "group_health",
    "group_survival",
    "cross_platform_propagation",
    "cross_platform_overlap",
)
SILVER_TABLES = ("events", "identity_map")
# Gold tables that carry their own as_of_date column: every published snapshot stays visible.
SNAPSHOT_TABLES = frozenset({"group_health", "cross_platform_overlap"})


def _date_dir(root: Path, table: str, as_of_date: date) -> Path:
    return root / table / f"as_of_date={as_of_date.isoformat()}"


def silver_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "silver", table, as_of_date)


def staging_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "staging" / "gold", table, as_of_date)


def gold_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "gold", table, as_of_date)


def published_dir(warehouse: Path) -> Path:
    return warehouse / "published"


def published_dates(warehouse: Path) -> list[date]:
    """Logical dates whose gold tables passed their gate and were published, oldest first."""
    directory = published_dir(warehouse)
    if not directory.is_dir():
        return []
    return sorted(date.fromisoformat(p.stem) for p in directory.glob("*.json"))
