"""Published gold as sorted row lists, to compare two runs over the same bronze table by table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from core.storage import Store
from engagement.publish import read_published


def gold_rows(warehouse: Path | Store, table: str, as_of: date) -> list[tuple]:
    """Every row of one published gold table, sorted."""
    rows = read_published(warehouse, table, as_of)  # noqa: F841 - DuckDB reads the local variable
    return duckdb.sql("SELECT * FROM rows ORDER BY ALL").fetchall()
