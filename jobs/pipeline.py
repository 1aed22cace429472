"""The daily pipeline for one logical date: validate bronze -> silver -> validate -> gold ->
validate -> publish. Each step reads its inputs from storage and writes its outputs there, so
Airflow can run the steps as separate tasks and ``engagement run`` can run them in a row; both
call these functions.

Storage layout: see ``engagement.warehouse``; a run only ever replaces its own date, so
re-runs are idempotent.

Every run recomputes its date from the whole of bronze (see README, "Late data"): gold rows
depend on first joins and lifetimes that reach back to the first event, so nothing shorter
than the full history is enough.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from engagement.settings import Settings
from engagement.warehouse import (
    GOLD_TABLES,
    SILVER_TABLES,
    gold_path,
    published_dir,
    silver_path,
    staging_path,
)
from streaming import bronze

log = logging.getLogger("engagement.pipeline")

STEPS = ("validate_bronze", "build_silver", "validate_silver", "build_gold", "validate_gold", "publish")


class PipelineError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _spark_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type):
        return "string"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_int32(arrow_type):
        return "int"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_binary(arrow_type):
        return "binary"
    raise TypeError(f"no Spark type for {arrow_type}")


def spark_ddl(arrow_schema) -> str:
    """A Spark DDL schema string for a pyarrow schema (bronze files are written by pyarrow)."""
    return ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in arrow_schema)


def read_bronze(spark, settings: Settings, table: str):
    """A bronze table (or quarantine) as a DataFrame; empty with the right schema if absent."""
    schema = {
        bronze.BRONZE_EVENTS: bronze.BRONZE_EVENTS_SCHEMA,
        bronze.BRONZE_IDENTITY: bronze.BRONZE_IDENTITY_SCHEMA,
        bronze.QUARANTINE: bronze.QUARANTINE_SCHEMA,
    }[table]
    path = settings.warehouse / table
    if not path.is_dir() or not any(path.rglob("*.parquet")):
        return spark.createDataFrame([], spark_ddl(schema))
    # Partition folders (topic=, partition=) are storage layout, not columns: the rows carry
    # kafka_topic and kafka_partition themselves.
    return spark.read.schema(spark_ddl(schema)).option("recursiveFileLookup", "true").parquet(str(path))


def read_dir(spark, path: Path):
    if not path.is_dir():
        raise PipelineError(f"{path} does not exist: run the step that writes it first")
    return spark.read.parquet(str(path))


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------
def validate_bronze(spark, settings: Settings, as_of_date: date):
    from expectations.runner import validate_layer

    tables = {
        "events": read_bronze(spark, settings, bronze.BRONZE_EVENTS),
        "identity": read_bronze(spark, settings, bronze.BRONZE_IDENTITY),
    }
    return validate_layer("bronze", tables)


def build_silver_step(spark, settings: Settings, as_of_date: date) -> dict[str, int]:
    from jobs.silver import build_silver

    events, identity_map = build_silver(
        read_bronze(spark, settings, bronze.BRONZE_EVENTS),
        read_bronze(spark, settings, bronze.BRONZE_IDENTITY),
        timezone=settings.timezone,
        as_of_date=as_of_date,
    )
    counts = {}
    for name, df in (("identity_map", identity_map), ("events", events)):
        path = silver_path(settings.warehouse, name, as_of_date)
        df.write.mode("overwrite").parquet(str(path))
        counts[name] = _parquet_rows(path)
    return counts


def validate_silver(spark, settings: Settings, as_of_date: date):
    from expectations.runner import validate_layer

    tables = {name: read_dir(spark, silver_path(settings.warehouse, name, as_of_date)) for name in SILVER_TABLES}
    return validate_layer("silver", tables)


def build_gold_tables(events, identity_map, *, as_of_date: date) -> dict:
    """All eight gold tables for one logical date, from silver (pure; no IO)."""
    from jobs.gold_cross_platform import build_cross_platform_overlap, build_cross_platform_propagation
    from jobs.gold_engagement import (
        build_daily_engagement,
        build_join_conversion,
        build_member_lifetime,
        build_retention_cohorts,
    )
    from jobs.gold_groups import build_group_health, build_group_survival

    group_health = build_group_health(events, as_of_date=as_of_date)
    return {
        "daily_engagement": build_daily_engagement(events, as_of_date=as_of_date),
        "join_conversion": build_join_conversion(events, as_of_date=as_of_date),
        "retention_cohorts": build_retention_cohorts(events, as_of_date=as_of_date),
        "member_lifetime": build_member_lifetime(events, as_of_date=as_of_date),
        "group_health": group_health,
        "group_survival": build_group_survival(group_health),
        "cross_platform_propagation": build_cross_platform_propagation(events, identity_map, as_of_date=as_of_date),
        "cross_platform_overlap": build_cross_platform_overlap(events, as_of_date=as_of_date),
    }


def build_gold_step(spark, settings: Settings, as_of_date: date) -> dict[str, int]:
    events = read_dir(spark, silver_path(settings.warehouse, "events", as_of_date)).cache()
    identity_map = read_dir(spark, silver_path(settings.warehouse, "identity_map", as_of_date))
    counts = {}
    for name, df in build_gold_tables(events, identity_map, as_of_date=as_of_date).items():
        path = staging_path(settings.warehouse, name, as_of_date)
        df.coalesce(1).write.mode("overwrite").parquet(str(path))
        counts[name] = _parquet_rows(path)
    events.unpersist()
    return counts


def validate_gold(spark, settings: Settings, as_of_date: date):
    from expectations.runner import validate_layer

    tables = {name: read_dir(spark, staging_path(settings.warehouse, name, as_of_date)) for name in GOLD_TABLES}
    return validate_layer("gold", tables)


def publish(settings: Settings, as_of_date: date) -> Path:
    """Move the validated gold tables of ``as_of_date`` from staging into place, then record it.

    The record is written last: a reader (``engagement query``) only sees dates with a record,
    so a crash half-way leaves the previous publication visible, and re-running the step
    finishes the job.
    """
    for name in GOLD_TABLES:
        source = staging_path(settings.warehouse, name, as_of_date)
        target = gold_path(settings.warehouse, name, as_of_date)
        if not source.is_dir():
            if target.is_dir():
                continue  # already moved by an earlier attempt of this step
            raise PipelineError(f"nothing to publish for {name} on {as_of_date}: run build_gold first")
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    record = {
        "as_of_date": as_of_date.isoformat(),
        "published_at": datetime.now(timezone.utc).isoformat(),
        "tables": {name: str(gold_path(settings.warehouse, name, as_of_date)) for name in GOLD_TABLES},
        "row_counts": {name: _parquet_rows(gold_path(settings.warehouse, name, as_of_date)) for name in GOLD_TABLES},
    }
    directory = published_dir(settings.warehouse)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{as_of_date.isoformat()}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, directory / f"{as_of_date.isoformat()}.json")
    if settings.postgres_url:
        # After the record: a PostgreSQL failure fails the step, and a retry republishes (idempotent).
        from engagement.postgres import publish_to_postgres

        publish_to_postgres(settings.postgres_url, settings.warehouse, as_of_date)
    return directory / f"{as_of_date.isoformat()}.json"


def _parquet_rows(directory: Path) -> int:
    """Rows in a folder of Parquet files, from their footers (no data is read)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in directory.glob("*.parquet"))


@dataclass
class RunResult:
    as_of_date: date
    silver_counts: dict[str, int]
    gold_counts: dict[str, int]
    reports: list


def run_daily(
    spark, settings: Settings, as_of_date: date, *, on_step: Callable[[str], None] | None = None
) -> RunResult:
    """Run every step for one logical date, in order; a failed gate raises before publish."""

    def step(name: str) -> None:
        log.info("%s: %s", as_of_date, name)
        if on_step:
            on_step(name)

    reports = []
    step("validate_bronze")
    reports.append(validate_bronze(spark, settings, as_of_date))
    step("build_silver")
    silver_counts = build_silver_step(spark, settings, as_of_date)
    step("validate_silver")
    reports.append(validate_silver(spark, settings, as_of_date))
    step("build_gold")
    gold_counts = build_gold_step(spark, settings, as_of_date)
    step("validate_gold")
    reports.append(validate_gold(spark, settings, as_of_date))
    step("publish")
    publish(settings, as_of_date)
    return RunResult(as_of_date, silver_counts, gold_counts, reports)


def spark_for(settings: Settings, app_name: str = "engagement"):
    from jobs.session import build_spark

    return build_spark(
        app_name=app_name,
        master=settings.spark_master,
        shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``spark-submit jobs/pipeline.py --as-of YYYY-MM-DD`` on a cluster."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", required=True, type=date.fromisoformat)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = spark_for(settings)
    run_daily(spark, settings, args.as_of)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
