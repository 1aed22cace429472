"""The deployment's spark-defaults.conf, read as spark-submit reads it (pure functions), so the
project's own driver options are added to an administrator's instead of replacing them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from jobs.spark_defaults import defaults_file, driver_default_java_options, read_properties


def test_properties_are_read_in_every_form_java_accepts():
    text = (
        "# a comment\n"
        "   ! another comment\n"
        "\n"
        "spark.master    spark://head:7077\n"
        "spark.driver.memory=4g\n"
        "spark.executor.memory : 8g  \n"
        "spark.driver.defaultJavaOptions -XX:+UseG1GC \\\n"
        "     -Dfile.encoding=UTF-8\n"
        "spark.app.name a\\tb\\u00e9\\\\\n"
        "spark.key\\=with\\:seps value\n"
        "spark.empty\n"
    )
    assert read_properties(text) == {
        "spark.master": "spark://head:7077",
        "spark.driver.memory": "4g",
        "spark.executor.memory": "8g",
        "spark.driver.defaultJavaOptions": "-XX:+UseG1GC -Dfile.encoding=UTF-8",
        "spark.app.name": "a\tb\u00e9\\",
        "spark.key=with:seps": "value",
        "spark.empty": "",
    }


def test_the_file_is_found_where_spark_submit_looks():
    assert defaults_file({"SPARK_CONF_DIR": "/etc/spark", "SPARK_HOME": "/opt/spark"}) == Path("/etc/spark/spark-defaults.conf")
    assert defaults_file({"SPARK_HOME": "/opt/spark"}) == Path("/opt/spark/conf/spark-defaults.conf")
    assert defaults_file({}).parent.parent.name == "pyspark"


def test_the_deployments_default_options_come_before_the_projects(tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.defaultJavaOptions  -XX:+UseG1GC -Dadmin=yes\n")
    own = ["-XX:SharedArchiveFile=/a b/c.jsa", "-Xlog:cds=off"]
    environ = {"SPARK_CONF_DIR": str(tmp_path)}
    assert driver_default_java_options(own, environ) == '-XX:+UseG1GC -Dadmin=yes "-XX:SharedArchiveFile=/a b/c.jsa" -Xlog:cds=off'
    assert driver_default_java_options(own, {"SPARK_CONF_DIR": str(tmp_path / "absent")}) == '"-XX:SharedArchiveFile=/a b/c.jsa" -Xlog:cds=off'


def test_spark_submit_keeps_the_deployments_default_options(tmp_path, monkeypatch):
    from core.settings import Settings
    from engagement.submit import submit_command
    from jobs.class_archive import DEFAULT_PATH

    (tmp_path / "spark-defaults.conf").write_text("spark.driver.defaultJavaOptions=-Dadmin=yes\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    command = submit_command(Settings(home=tmp_path), "build_silver", date(2026, 9, 1), run_id="r", triggered_by="test")
    value = next(arg.split("=", 1)[1] for arg in command if arg.startswith("spark.driver.defaultJavaOptions="))
    assert value.startswith("-Dadmin=yes -XX:SharedArchiveFile="), value
    assert str(DEFAULT_PATH) in value


def test_no_class_archive_is_recorded_under_a_non_empty_conf_folder(tmp_path, monkeypatch):
    # Spark puts SPARK_CONF_DIR first on the driver's class path; the JDK refuses to archive a
    # class path with a non-empty folder in it (the recording's JVM would fail after ~40 s).
    from jobs.class_archive import build

    (tmp_path / "spark-defaults.conf").write_text("spark.master local[1]\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"conf folder .* \(SPARK_CONF_DIR\) first"):
        build(tmp_path / "archive" / "spark-classes.jsa")
    assert not (tmp_path / "archive").exists()
