"""Spark's edges: reading the loader's bronze and a run's silver and gold, writing a table.

Only job entry points and the pipeline steps call these; the transforms never touch storage.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from core import tables
from core.errors import UserError
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE
from core.loader_log import committed_files
from core.storage import Store
from jobs.schemas import spark_schema

_LOADER_TABLES = {
    BRONZE_EVENTS: tables.BRONZE_EVENTS,
    BRONZE_IDENTITY: tables.BRONZE_IDENTITY,
    QUARANTINE: tables.QUARANTINE,
}


class MissingInput(UserError):
    """A step's input has not been written: an earlier step has to run first."""


def read_bronze(spark: SparkSession, store: Store, table: str) -> DataFrame:
    """A bronze table (or quarantine) as a DataFrame; empty with the right schema if absent."""
    schema = spark_schema(_LOADER_TABLES[table])
    # Committed ranges only: a data file without its commit is a crash's or a stale loader's
    # leftover. The folders (topic=, partition=) are storage layout, not columns: the rows carry
    # kafka_topic and kafka_partition themselves.
    files = committed_files(store, table)
    if not files:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*(spark_url(store.url(key)) for key in files))


def spark_url(url: str) -> str:
    """A store URL as Spark's Hadoop file systems name it (S3 is ``s3a://`` there)."""
    return "s3a://" + url.removeprefix("s3://") if url.startswith("s3://") else url


def read_table(spark: SparkSession, path: Path) -> DataFrame:
    """A table a pipeline step wrote (silver, staged or published gold)."""
    if not path.is_dir():
        raise MissingInput(f"{path} does not exist: run the step that writes it first")
    return spark.read.parquet(str(path))


def parquet_rows(directory: Path) -> int:
    """Rows in a folder of Parquet files, from their footers (no data is read)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in directory.glob("*.parquet"))
