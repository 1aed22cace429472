"""Session-wide fixtures: one SparkSession (and, in kafka_fixture / s3_fixture / postgres_fixture, one
real broker, one real S3-compatible server and one real PostgreSQL server) per run, each started on
first use."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from kafka_fixture import fresh_topics, kafka_broker  # noqa: F401
from postgres_fixture import postgres_server  # noqa: F401
from s3_fixture import object_store  # noqa: F401

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# py4j says at INFO that it closes its connection, from a finalizer at the interpreter's exit.
# Importing Airflow puts the root logger at INFO with a handler on the stdout of that moment
# (pytest's capture, closed by then), so logging printed a "Logging error" traceback after
# every test run. WARNING, as engagement.cli sets it.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark():
    from jobs.session import build_spark

    session = build_spark(app_name="engagement-tests", shuffle_partitions=2, driver_memory="1g")
    yield session
    session.stop()


# Airflow reads its configuration on first import: point it at a throw-away home before any
# test imports it. engagement.airflow_local keeps an AIRFLOW_HOME that is already set.
_airflow_home = tempfile.mkdtemp(prefix="engagement-airflow-")
atexit.register(shutil.rmtree, _airflow_home, ignore_errors=True)  # every session made one more
os.environ["AIRFLOW_HOME"] = _airflow_home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_airflow_home}/airflow.db"
