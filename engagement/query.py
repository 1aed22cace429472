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
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from core import tables
from core.errors import UserError
from core.layout import published_dates
from core.storage import LocalStore, S3Store, Store, as_store
from core.tables import GOLD_TABLES, SNAPSHOT_TABLES
from engagement.publish import published_files
from engagement.runs import list_runs
from streaming.bronze import arrow_schema


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


QUERYABLE = (*GOLD_TABLES, tables.PIPELINE_RUNS.name)


def _create_pipeline_runs_view(con, warehouse: Path | Store) -> int:
    """``pipeline_runs`` over the run records (empty, with its columns, before the first run)."""
    import pyarrow as pa

    definition = tables.PIPELINE_RUNS
    records = list_runs(warehouse)

    def value(record: dict[str, Any], column: tables.Column) -> Any:
        raw = record.get(column.name)
        if raw is None:
            return None
        if column.name in ("row_counts", "gate_results"):
            return json.dumps(raw, sort_keys=True)  # the JSON objects, shown as their text
        if column.type == "date":
            return date.fromisoformat(raw)
        if column.type == "timestamp":
            return datetime.fromisoformat(raw)
        return raw

    runs = pa.Table.from_pylist(
        [{c.name: value(r, c) for c in definition.columns} for r in records], schema=arrow_schema(definition)
    )
    con.register("_pipeline_runs_records", runs)
    con.execute(f"CREATE VIEW {definition.name} AS SELECT * FROM _pipeline_runs_records")
    return len(records)


def connect(warehouse: Path | Store, *, as_of: date | None = None):
    """A DuckDB connection with one view per gold table (published dates only) and
    ``pipeline_runs`` (every run, whatever its outcome)."""
    import duckdb

    store = as_store(warehouse)
    dates = published_dates(store)
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
        keys = [k for d in chosen for k in published_files(store, table, d)]
        if isinstance(store, LocalStore):
            # hive_partitioning off: as_of_date in the folder name is layout, not a column.
            files = ", ".join(_sql_string(store.path(k)) for k in keys)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}], hive_partitioning = false)")
        else:
            # DuckDB reads S3 through an extension it would download; Arrow reads it natively.
            con.register(f"_{table}_files", _s3_dataset(store, keys))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_files")
    return con


def _s3_dataset(store: S3Store, keys: list[str]):
    """The files ``keys`` of an S3 warehouse as one Arrow dataset (credentials: AWS_* environment)."""
    import pyarrow.dataset as ds
    from pyarrow import fs

    options = {"region": store.region}
    if store.endpoint:
        scheme, _, address = store.endpoint.partition("://")
        options.update(endpoint_override=address, scheme=scheme)
    paths = [store.url(k).removeprefix("s3://") for k in keys]
    return ds.dataset(paths, filesystem=fs.S3FileSystem(**options), format="parquet")


def run_query(warehouse: Path | Store, sql: str, *, as_of: date | None = None) -> QueryResult:
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
