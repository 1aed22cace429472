"""The SparkSession for local runs; on a cluster, ``spark-submit`` settings take precedence."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession


def build_spark(
    *,
    app_name: str = "engagement",
    master: str | None = "local[2]",
    shuffle_partitions: int = 4,
    driver_memory: str = "2g",
) -> SparkSession:
    """Get or create the session. All timestamps are handled in UTC; reporting dates are
    derived explicitly in the reporting zone, never from the JVM's default zone."""
    # Resolving the machine's host name can stall the driver start for ~40 s; bind loopback
    # unless the deployment says otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    if master and not os.environ.get("SPARK_SUBMIT_MASTER_SET"):
        builder = builder.master(master)
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
