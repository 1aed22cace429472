"""The SparkSession: local mode by default; under ``spark-submit`` the submitted settings win."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.class_archive import DEFAULT_PATH as DEFAULT_CLASS_ARCHIVE
from jobs.class_archive import java_options as class_archive_options
from jobs.spark_defaults import DRIVER_DEFAULT_JAVA_OPTIONS, driver_default_java_options


def launched_by_spark_submit() -> bool:
    """Whether ``spark-submit`` (or another Spark launcher) started this Python process.

    The launcher starts the JVM first and hands this process its gateway in
    ``PYSPARK_GATEWAY_PORT``; a plain ``python`` process starts its own JVM instead.
    """
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(
    *,
    app_name: str = "engagement",
    master: str | None = "local[2]",
    shuffle_partitions: int = 4,
    driver_memory: str = "2g",
    conf: dict[str, str] | None = None,
    class_archive: Path | None = DEFAULT_CLASS_ARCHIVE,
) -> SparkSession:
    """Get or create the session. All timestamps are handled in UTC; reporting dates are
    derived explicitly in the reporting zone, never from the JVM's default zone.

    ``app_name``, ``master``, ``shuffle_partitions`` and ``driver_memory`` are defaults for a
    process that starts Spark itself (local mode). Under ``spark-submit`` the submitted
    ``--name``, ``--master``, ``--driver-memory`` and ``--conf`` values are the deployment's and
    are left alone.

    A JVM this process starts maps the classes of ``class_archive`` when that file exists
    (``jobs.class_archive``: ``make env`` records it; a few seconds off every start).
    """
    # Resolving the machine's host name can stall the driver start for ~40 s; bind loopback
    # unless the deployment says otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    if not launched_by_spark_submit():
        # Python workers (Arrow UDFs: jobs.privacy) run this interpreter, with its packages,
        # not whichever python3 is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.appName(app_name)
        if master:
            builder = builder.master(master)
        builder = (
            builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
            .config("spark.default.parallelism", str(shuffle_partitions))
            .config("spark.driver.memory", driver_memory)
        )
        if (master or "").startswith("local"):
            # A read of more than `threshold` paths lists them with a Spark job of its own, which
            # on one machine costs more (~1 s a read) than listing a few hundred files here.
            builder = builder.config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
            # Cached tables (silver's history summary, the full refresh's events, the gates'
            # batches) are built faster without compressing their columns, for about a quarter
            # more memory (4.1M summary rows: 2.3-2.7 s and 351 MiB instead of 3.3-4.2 s and
            # 283 MiB warm; 6.9 instead of 12.4 CPU seconds as a run's first cache).
            builder = builder.config("spark.sql.inMemoryColumnarStorage.compressed", "false")
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    java_options = []
    log_file = os.environ.get("ENGAGEMENT_LOG_FILE")
    jvm_stderr = contextlib.nullcontext()
    if not launched_by_spark_submit():
        java_options += class_archive_options(class_archive)
        if log_file and not os.environ.get("ENGAGEMENT_VERBOSE"):
            # Spark's log lines to a file beside the CLI's log (the JVM starts with this session).
            spark_log = str(Path(log_file).with_suffix(".spark.log"))
            jvm_stderr = _stderr_to(spark_log)
            config = Path(__file__).with_name("log4j2.properties")
            java_options += [f"-Dlog4j2.configurationFile={config}", f"-Dengagement.spark.log={spark_log}"]
    if java_options:
        # Spark puts these before spark.driver.extraJavaOptions, which stays the deployment's;
        # the deployment's own default options come first.
        builder = builder.config(DRIVER_DEFAULT_JAVA_OPTIONS, driver_default_java_options(java_options))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    with jvm_stderr:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def _stderr_to(path: str) -> Iterator[None]:
    """Point this process's standard error (file descriptor 2) at ``path`` while the JVM is
    launched: the JVM inherits it, so what it writes there itself, outside log4j (the Java
    launcher's "WARNING: Using incubator modules"), goes to the log instead of the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
