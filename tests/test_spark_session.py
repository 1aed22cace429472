"""The session builder: local defaults for a plain process, the submitted settings under
spark-submit (a cluster's --master must win over the code's local default)."""

from __future__ import annotations

import os
import re
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


def test_driver_maps_spark_classes_from_the_recorded_archive(tmp_path):
    # `make env` records the archive (jobs.class_archive); a driver this process starts then maps
    # Spark's classes from it instead of loading them from the jars, and the deployment's own
    # spark.driver.extraJavaOptions still apply beside it (here: the JVM's class-load log).
    from jobs.class_archive import DEFAULT_PATH

    assert DEFAULT_PATH.is_file(), f"no Spark class archive at {DEFAULT_PATH}: run `make env`"
    loaded = tmp_path / "classes.log"
    script = tmp_path / "start_driver.py"
    script.write_text(
        "from jobs.session import build_spark\n"
        f"spark = build_spark(conf={{'spark.driver.extraJavaOptions': '-Xlog:class+load=info:file={loaded}'}})\n"
        "assert spark.range(3).count() == 3\n"
        "spark.stop()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    context = [line for line in loaded.read_text().splitlines() if " org.apache.spark.SparkContext " in line]
    assert context, "the class-load log does not name SparkContext"
    assert "source: shared objects file (top)" in context[0], context[0]


def test_a_driver_keeps_the_deployments_default_java_options(tmp_path):
    # The project's own options go in spark.driver.defaultJavaOptions; the deployment's value of
    # that key (its spark-defaults.conf, here a system property) must still reach the JVM.
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.defaultJavaOptions -Dengagement.deployment=kept\n")
    script = tmp_path / "start_driver.py"
    script.write_text(
        "from jobs.session import build_spark\n"
        "spark = build_spark()\n"
        "jvm = spark.sparkContext._jvm\n"
        "arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())\n"
        "print('DEPLOYMENT', jvm.System.getProperty('engagement.deployment'))\n"
        "print('OWN', any(a.startswith('-Dlog4j2.configurationFile=') for a in arguments))\n"
        "spark.stop()\n"
    )
    env = {**os.environ, "SPARK_CONF_DIR": str(tmp_path), "ENGAGEMENT_LOG_FILE": str(tmp_path / "run.log")}
    env.pop("ENGAGEMENT_VERBOSE", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"DEPLOYMENT kept", "OWN True"} <= set(done.stdout.splitlines()), done.stdout


def test_a_truncated_class_archive_is_never_handed_to_the_jvm(tmp_path):
    # JDK 17's JVM given an incomplete archive crashes (SIGBUS) rather than ignoring it, so a
    # recording is only moved into place when a JVM starts with it; a missing one gives no option
    # at all. JDK 25's JVM starts without it instead.
    from core.java import java_executable
    from jobs.class_archive import DEFAULT_PATH, java_options, usable

    truncated = tmp_path / "spark-classes.jsa"
    with open(DEFAULT_PATH, "rb") as whole:
        truncated.write_bytes(whole.read(100_000))
    assert usable(DEFAULT_PATH)
    shown = subprocess.run([java_executable(), "-version"], capture_output=True, text=True).stderr
    feature = int(re.search(r'version "(\d+)', shown).group(1))
    if feature == 17:
        assert not usable(truncated)
    elif feature >= 25:
        assert usable(truncated)
    assert java_options(tmp_path / "absent.jsa") == []
    assert java_options(None) == []
