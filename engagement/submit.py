"""Run a pipeline step on a Spark cluster with ``spark-submit`` (client mode).

When ``ENGAGEMENT_SPARK_MASTER`` names a cluster (``spark://...``, ``yarn``, ``k8s://...``), the
Airflow task does not start Spark in its own process: it submits ``engagement/pipeline.py
--step NAME`` to the cluster and waits, with the driver's output in the task log. The step
records itself in ``pipeline_runs`` exactly as a local run does.

Why not the Airflow Spark provider's ``SparkSubmitOperator``: apache-airflow-providers-apache-spark
6.3.4 resolves next to Airflow 3.3.2 and pyspark 4.3.0 only by also installing
``pyspark-client==4.2.0``, a second distribution of the ``pyspark`` package at another version
(two wheels writing the same files). The operator itself only builds this same command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from datetime import date
from pathlib import Path

from core.errors import UserError
from core.settings import Settings

PIPELINE_FILE = Path(__file__).resolve().with_name("pipeline.py")


class SparkSubmitFailed(UserError):
    """spark-submit ended non-zero; ``details`` holds the end of its output."""


def is_cluster(master: str) -> bool:
    """Whether a master URL names a cluster rather than this process (``local[...]``)."""
    return not master.startswith("local")


def spark_submit_executable() -> str:
    """``$SPARK_HOME/bin/spark-submit`` if SPARK_HOME is set, else the one pyspark ships."""
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home:
        return str(Path(spark_home) / "bin" / "spark-submit")
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


def submit_command(
    settings: Settings, step: str, as_of_date: date, *, run_id: str, triggered_by: str, full_refresh: bool = False
) -> list[str]:
    """The spark-submit command line of one step (settings are the deployment's defaults;
    ``--conf`` values set on the cluster itself still apply where these do not)."""
    from jobs.class_archive import DEFAULT_PATH, java_options
    from jobs.spark_defaults import DRIVER_DEFAULT_JAVA_OPTIONS, driver_default_java_options

    # The driver runs here (client mode), on this environment's jars: its class archive applies
    # (a JVM of another Spark ignores it), after the deployment's own default options.
    archive = java_options(DEFAULT_PATH)
    driver = ["--conf", f"{DRIVER_DEFAULT_JAVA_OPTIONS}={driver_default_java_options(archive)}"] if archive else []
    storage = []
    if settings.warehouse_on_object_storage:
        from jobs.object_storage import s3a_conf

        storage = [arg for key, value in s3a_conf(settings.s3_endpoint, settings.s3_region).items() for arg in ("--conf", f"{key}={value}")]
    return [
        spark_submit_executable(),
        "--master", settings.spark_master,
        "--name", f"engagement_daily.{step}.{as_of_date.isoformat()}",
        "--driver-memory", settings.spark_driver_memory,
        "--conf", f"spark.sql.shuffle.partitions={settings.spark_shuffle_partitions}",
        "--conf", "spark.sql.session.timeZone=UTC",
        *driver,
        *storage,
        str(PIPELINE_FILE),
        "--as-of", as_of_date.isoformat(),
        "--step", step,
        "--run-id", run_id,
        "--triggered-by", triggered_by,
        *(["--full-refresh"] if full_refresh else []),
    ]  # fmt: skip


def submit_step(
    settings: Settings, step: str, as_of_date: date, *, run_id: str, triggered_by: str, full_refresh: bool = False
) -> int:
    """Submit one step and wait; its output goes to this process's stdout (the task log)."""
    command = submit_command(settings, step, as_of_date, run_id=run_id, triggered_by=triggered_by, full_refresh=full_refresh)
    # The driver runs here (client mode): same interpreter, same project; executors need no
    # Python code, since the jobs use no Python UDFs.
    env = {**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
           "PYSPARK_DRIVER_PYTHON": sys.executable}  # fmt: skip
    print("spark-submit:", " ".join(command), flush=True)
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            tail.append(line.rstrip("\n"))
    if process.returncode != 0:
        raise SparkSubmitFailed(
            f"spark-submit of {step} for {as_of_date} on {settings.spark_master} exited {process.returncode}: "
            "the driver's output above says why (check that the master is reachable and has free cores)",
            details="\n".join(tail),
        )
    return process.returncode
