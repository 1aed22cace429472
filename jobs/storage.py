"""Spark's edges: reading the loader's bronze and a run's silver and gold, writing a table.

Only job entry points and the pipeline steps call these; the transforms never touch storage.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from core import tables
from core.errors import UserError
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE
from core.loader_log import committed_files
from core.storage import LocalStore, Store
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
    # Committed ranges only: a data file without its commit is a crash's or a stale loader's
    # leftover.
    return read_bronze_files(spark, store, table, committed_files(store, table))


def read_bronze_files(spark: SparkSession, store: Store, table: str, keys: list[str]) -> DataFrame:
    """Some committed files of a bronze table (or quarantine); empty with the right schema if none."""
    return read_with_schema(spark, store, keys, spark_schema(_LOADER_TABLES[table]))


def read_with_schema(spark: SparkSession, store: Store, keys: list[str], schema: StructType) -> DataFrame:
    """Parquet files read as ``schema``'s columns only (folder names such as ``topic=`` or
    ``_date=`` are storage layout, not columns); an empty frame when there are none."""
    if not keys:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*(spark_url(store.url(k)) for k in keys)).select(*schema.fieldNames())


def spark_url(url: str) -> str:
    """A store URL as Spark's Hadoop file systems name it (S3 is ``s3a://`` there)."""
    return "s3a://" + url.removeprefix("s3://") if url.startswith("s3://") else url


def read_files(spark: SparkSession, store: Store, keys: list[str]) -> DataFrame:
    """The Parquet files ``keys`` of ``store`` as one DataFrame (a staged or published table)."""
    return spark.read.parquet(*(spark_url(store.url(k)) for k in keys))


def write_table(df: DataFrame, store: Store, prefix: str, *, partition_by: str | None = None) -> None:
    """Write ``df`` as Parquet under ``prefix``, replacing what was there (in folders
    ``<partition_by>=<value>`` when given: one file per value)."""
    if partition_by is None:
        df.write.mode("overwrite").parquet(spark_url(store.url(prefix)))
    else:
        df.repartition(partition_by).write.mode("overwrite").partitionBy(partition_by).parquet(spark_url(store.url(prefix)))


def parquet_rows(store: Store, keys: list[str]) -> int:
    """Rows in Parquet files, from their footers (a local file's data is not read)."""
    import io

    import pyarrow.parquet as pq

    if isinstance(store, LocalStore):
        return sum(pq.read_metadata(store.path(k)).num_rows for k in keys)
    return sum(pq.read_metadata(io.BytesIO(store.get(k))).num_rows for k in keys)
