"""A class-data-sharing archive for the Spark driver's JVM, built once per Python environment.

A driver JVM loads, verifies and links some 18,000 classes (Spark, Hadoop, Parquet, Janino,
Jackson ...; counted for a driver that only counts three rows) every time it starts; on a
2-core machine that is several seconds of each session's start and of its first query. JDK 17
can record the classes a run loaded in an archive (``-XX:ArchiveClassesAtExit``) that later
JVMs map instead (``-XX:SharedArchiveFile``). Every ``engagement run``, Airflow task and test session that starts
its own driver pays this, so ``make env`` (and the image's build) records one here by running a
small workload of the operations the pipeline uses; :func:`jobs.session.build_spark` uses it
when it exists.

The JVM checks the archive against its own build and class path and ignores one that does
not match (its warning is silenced: Spark then starts as without one); installing other
packages or another JDK calls for a new one (``python -m jobs.class_archive``, which
``make env`` runs again when the lock changes). Spark puts its conf folder first on the
driver's class path, and the JDK neither records nor maps an archive with a non-empty folder
there: a deployment that sets ``SPARK_CONF_DIR`` to its configuration starts without one. A
truncated archive crashes JDK 17's JVM (JDK 25's starts without it), so one is only ever moved
into place whole, after the JVM that wrote it has exited.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.java import java_executable
from jobs.spark_defaults import conf_folder

# Beside the installed packages whose classes it holds (the venv, or the image's Python).
DEFAULT_PATH = Path(sys.prefix) / "share" / "engagement" / "spark-classes.jsa"

# A mismatched archive (another JDK, another class path) is skipped with a warning on every
# start; Spark runs as without it, so the warning only alarms.
_QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def java_options(archive: Path | None) -> list[str]:
    """The driver JVM's options for ``archive``: none when there is no such file."""
    if archive is None or not archive.is_file():
        return []
    return [f"-XX:SharedArchiveFile={archive}", *_QUIET]


def usable(archive: Path) -> bool:
    """Whether the JVM Spark starts with ``archive`` runs: JDK 17 maps an incomplete one (the
    disk filled while it was written) and crashes instead of ignoring it."""
    java = java_executable()
    if java is None or not archive.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="class-archive-check-") as crash_reports:  # hs_err_pid*.log
        checked = subprocess.run([java, *java_options(archive), "-version"], cwd=crash_reports, capture_output=True, timeout=120)
    return checked.returncode == 0


def build(archive: Path = DEFAULT_PATH, *, timeout: float = 600) -> float:
    """Record the archive at ``archive`` by running the workload in a JVM of its own; returns
    the seconds it took. An existing archive is replaced only when the new one is complete."""
    conf = conf_folder()
    if conf.is_dir() and any(conf.iterdir()):
        raise RuntimeError(
            f"not recording the Spark class archive: Spark puts its conf folder {conf} (SPARK_CONF_DIR) first on "
            "the driver's class path, and the JDK archives no class path with a non-empty folder in it. "
            "Spark works without the archive, only slower to start"
        )
    started = time.monotonic()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="class-archive-", dir=archive.parent) as scratch:
        recording = Path(scratch) / archive.name
        done = subprocess.run(
            [sys.executable, "-m", "jobs.class_archive", "--workload", str(recording), scratch],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 or not usable(recording):
            raise RuntimeError(
                f"recording the Spark class archive failed (exit {done.returncode}); Spark works without it, "
                f"only slower to start:\n{(done.stderr or done.stdout)[-2000:]}"
            )
        os.replace(recording, archive)
    return time.monotonic() - started


def _workload(recording: str, scratch: str) -> None:
    """What a daily run's driver does, in small: read and write Parquet, shuffle, join, window,
    aggregate, an Arrow UDF; then stop the JVM and wait for it, since it writes the archive as it
    exits."""
    import pandas as pd
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.privacy import pseudonym_column
    from jobs.session import build_spark

    spark = build_spark(
        app_name="class-archive", class_archive=None, conf={"spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={recording}"}
    )
    jvm = spark.sparkContext._gateway.proc  # the JVM that spark-submit exec'd into

    events = spark.range(5000).select(
        F.col("id").cast("string").alias("event_id"),
        (F.col("id") % 97).cast("string").alias("user_id"),
        F.when(F.col("id") % 3 == 0, "join").otherwise("like").alias("event_type"),
        (F.timestamp_seconds(F.lit(1_780_000_000) + F.col("id") * 60)).alias("event_time"),
    )
    events = events.withColumn("event_date", F.to_date(F.from_utc_timestamp("event_time", "Asia/Shanghai")))
    path = f"{scratch}/events"
    events.repartition("event_date").write.mode("overwrite").partitionBy("event_date").parquet(path)
    stored = spark.read.schema(events.schema).parquet(path).cache()
    first = Window.partitionBy("user_id").orderBy("event_time", "event_id")
    firsts = stored.withColumn("n", F.row_number().over(first)).where("n = 1").drop("n")
    joined = stored.join(firsts.select("user_id", F.col("event_date").alias("cohort_date")), "user_id", "left")
    summary = joined.groupBy("event_type", "cohort_date").agg(
        F.count("*").alias("events"), F.countDistinct("user_id").alias("users"), F.percentile_approx("event_id", 0.5)
    )
    summary.join(F.broadcast(firsts.select("event_type").distinct()), "event_type", "left_anti").count()
    summary.coalesce(1).write.mode("overwrite").parquet(f"{scratch}/summary")
    stored.select(pseudonym_column(F.col("user_id"), "any key")).distinct().collect()
    spark.createDataFrame(pd.DataFrame({"a": [1, 2]})).toPandas()
    spark.stop()
    jvm.stdin.close()  # the gateway exits when its stdin closes
    jvm.wait(timeout=300)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.class_archive [PATH]``: record the archive (default: :data:`DEFAULT_PATH`)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--workload"]:
        _workload(args[1], args[2])
        return 0
    archive = Path(args[0]) if args else DEFAULT_PATH
    try:
        seconds = build(archive)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return 1
    print(f"Spark class archive: {archive} ({archive.stat().st_size / 2**20:.0f} MiB, {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
