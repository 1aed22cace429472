"""The session builder: local defaults for a plain process, the submitted settings under
spark-submit (a cluster's --master must win over the code's local default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyspark

SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"


def test_plain_process_gets_the_local_defaults(spark):
    # The session fixture calls build_spark(shuffle_partitions=2) with the default master.
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_local_mode_lists_many_files_without_a_spark_job(spark, tmp_path):
    # A daily run reads silver's files of every date (90 and more paths). Over 32 paths Spark's
    # default lists them with a job of its own, about a second of a small run's time each read.
    paths = []
    for i in range(40):
        path = str(tmp_path / f"part-{i}.parquet")
        spark.range(i, i + 1).write.parquet(path)
        paths.append(path)
    spark.sparkContext.setJobGroup("listing", "reading 40 paths")
    try:
        frame = spark.read.schema("id long").parquet(*paths)  # as silver is read: no schema inference
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert list(spark.sparkContext.statusTracker().getJobIdsForGroup("listing")) == []
    assert frame.count() == 40


def test_spark_submit_settings_win(tmp_path):
    script = tmp_path / "show_session.py"
    script.write_text(
        "from jobs.session import build_spark\n"
        "spark = build_spark(app_name='from-code', master='local[2]', shuffle_partitions=4)\n"
        "print('MASTER', spark.sparkContext.master)\n"
        "print('NAME', spark.sparkContext.appName)\n"
        "print('SHUFFLE', spark.conf.get('spark.sql.shuffle.partitions'))\n"
        "print('ZONE', spark.conf.get('spark.sql.session.timeZone'))\n"
        "spark.stop()\n"
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    done = subprocess.run(
        [str(SPARK_SUBMIT), "--master", "local[1]", "--name", "from-submit", "--conf", "spark.sql.shuffle.partitions=3", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ")[0] in ("MASTER", "NAME", "SHUFFLE", "ZONE"))
    assert shown == {"MASTER": "local[1]", "NAME": "from-submit", "SHUFFLE": "3", "ZONE": "UTC"}
