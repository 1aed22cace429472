"""Spark's view of the table schemas defined once in :mod:`core.tables`.

``spark_schema`` turns a table definition into a ``StructType`` (to read Parquet or build test
frames with), and ``conform`` is the final ``select`` of every builder: the output has exactly
the defined columns, in order, with the defined types, so a builder cannot drift from the
definition that the quality suites, PostgreSQL and the data dictionary read too.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from core import tables

SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "int": IntegerType(),
    "bigint": LongType(),
    "double": DoubleType(),
    "boolean": BooleanType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "binary": BinaryType(),
}


def spark_schema(table: tables.Table) -> StructType:
    """The ``StructType`` of a defined table."""
    return StructType([StructField(c.name, SPARK_TYPES[c.type], c.nullable) for c in table.columns])


def conform(df: DataFrame, table: tables.Table) -> DataFrame:
    """``df`` reduced to ``table``'s columns, in order, cast to their defined types."""
    return df.select(*[F.col(c.name).cast(SPARK_TYPES[c.type]).alias(c.name) for c in table.columns])


# silver.events: event_time is the UTC instant (the session time zone is UTC); event_date is the
# calendar date of event_time in the reporting time zone (DESIGN section 4).
SILVER_EVENTS = spark_schema(tables.SILVER_EVENTS)
# silver.identity_map: every account, linked or not, in exactly one person.
IDENTITY_MAP = spark_schema(tables.IDENTITY_MAP)
