"""SQL over the published gold tables, by name, on the embedded engine (DuckDB).

Each gold table is a view. Tables without an ``as_of_date`` column show the latest published
run (each run recomputes the whole history up to its date, so the latest is the complete,
corrected picture); ``group_health`` and ``cross_platform_overlap`` carry ``as_of_date`` and
show every published snapshot.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from core import tables
from core.errors import UserError
from core.layout import gold_path, pipeline_runs_dir, published_dates
from core.tables import GOLD_TABLES, SNAPSHOT_TABLES


class QueryError(UserError):
    """Nothing to query yet, or the SQL was refused; the message says which."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _nothing_published(as_of: date | None) -> str:
    return (
        "no gold tables are published yet"
        + (f" on or before {as_of}" if as_of else "")
        + ": run `engagement run --as-of YYYY-MM-DD` (or `make demo`) first"
    )


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


# DuckDB's names for the types of core.tables.
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "binary": "BLOB",
}
QUERYABLE = (*GOLD_TABLES, tables.PIPELINE_RUNS.name)


def _create_pipeline_runs_view(con, warehouse: Path) -> int:
    """``pipeline_runs`` over the run records (empty, with its columns, before the first run)."""
    definition = tables.PIPELINE_RUNS
    files = sorted(pipeline_runs_dir(warehouse).glob("*.json"))
    if files:
        # The two JSON-object columns are read as JSON and shown as their text.
        columns = {c.name: "JSON" if c.name in ("row_counts", "gate_results") else _DUCKDB_TYPES[c.type] for c in definition.columns}
        spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"
        source = f"read_json([{', '.join(_sql_string(f) for f in files)}], columns = {spec}, format = 'auto')"
        select = ", ".join(
            f"CAST({c.name} AS VARCHAR) AS {c.name}" if c.name in ("row_counts", "gate_results") else c.name
            for c in definition.columns
        )
    else:
        source = "(SELECT 1) AS nothing WHERE false"
        select = ", ".join(f"CAST(NULL AS {_DUCKDB_TYPES[c.type]}) AS {c.name}" for c in definition.columns)
    con.execute(f"CREATE VIEW {definition.name} AS SELECT {select} FROM {source}")
    return len(files)


def connect(warehouse: Path, *, as_of: date | None = None):
    """A DuckDB connection with one view per gold table (published dates only) and
    ``pipeline_runs`` (every run, whatever its outcome)."""
    import duckdb

    dates = published_dates(warehouse)
    if as_of is not None:
        dates = [d for d in dates if d <= as_of]
    con = duckdb.connect(database=":memory:")
    runs = _create_pipeline_runs_view(con, warehouse)
    if not dates:
        if runs:
            return con  # pipeline_runs says why nothing is published; gold queries fail clearly
        raise QueryError(_nothing_published(as_of))
    for table in GOLD_TABLES:
        chosen = dates if table in SNAPSHOT_TABLES else dates[-1:]
        files = ", ".join(_sql_string(gold_path(warehouse, table, d) / "*.parquet") for d in chosen)
        # hive_partitioning off: as_of_date in the folder name is layout, not a column.
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}], hive_partitioning = false)")
    return con


def run_query(warehouse: Path, sql: str, *, as_of: date | None = None) -> QueryResult:
    """Run one SQL statement over the gold views."""
    import duckdb

    con = connect(warehouse, as_of=as_of)
    try:
        cursor = con.execute(sql)
    except duckdb.CatalogException as exc:
        if not published_dates(warehouse):
            raise QueryError(_nothing_published(as_of) + "; `SELECT * FROM pipeline_runs` shows the runs so far") from exc
        raise QueryError(f"{' '.join(str(exc).split())} (tables: {', '.join(QUERYABLE)})") from exc
    except duckdb.Error as exc:
        raise QueryError(f"{' '.join(str(exc).split())} (tables: {', '.join(QUERYABLE)})") from exc
    columns = [d[0] for d in cursor.description] if cursor.description else []
    # DuckDB returns DECIMAL for literals and SUM()/division results: analysts want numbers.
    rows = [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in cursor.fetchall()] if cursor.description else []
    con.close()
    return QueryResult(columns, rows)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_result(result: QueryResult, fmt: str = "table") -> str:
    """Render as an aligned text table, CSV or JSON (one object per row, in a list)."""
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, row)) for row in result.rows], default=str, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(["" if v is None else v for v in row] for row in result.rows)
        return buffer.getvalue().rstrip("\n")
    if fmt != "table":
        raise QueryError(f"unknown format {fmt!r}: use table, csv or json")
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in result.rows) for i in range(len(widths))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(result.columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(out)
