"""Published gold as sorted row lists, to compare two runs over the same bronze table by table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from core.layout import gold_path


def gold_rows(warehouse: Path, table: str, as_of: date) -> list[tuple]:
    """Every row of one published gold table, sorted."""
    files = str(gold_path(warehouse, table, as_of) / "*.parquet")
    return duckdb.sql(f"SELECT * FROM read_parquet('{files}', hive_partitioning = false) ORDER BY ALL").fetchall()
