"""The daily pipeline on a Spark standalone cluster (a master and a worker started from
pyspark's own distribution with ``spark-class``), submitted step by step the way an Airflow task
submits it, gives the same gold rows as local mode over the same bronze."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pyspark
import pytest
from gold_rows import gold_rows

from core.layout import published_dates
from core.settings import Settings
from core.tables import GOLD_TABLES
from engagement.pipeline import STEP_NAMES, step_named
from engagement.runs import list_runs
from engagement.submit import submit_step
from streaming.broker import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
START = date(2026, 3, 1)
AS_OF = START + timedelta(days=9)


def _master_state(web_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/json/", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``spark://127.0.0.1:PORT`` with one worker (2 cores, 2 GiB); the master's web port."""
    root = tmp_path_factory.mktemp("spark-cluster")
    # Every port chosen here: a daemon left to pick its own could take one meant for another.
    port, web, worker_port, worker_web = free_ports(4)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(root), "SPARK_WORKER_DIR": str(root / "work"),
           "PYSPARK_PYTHON": sys.executable, "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}  # fmt: skip
    commands = {
        "master": [str(SPARK_CLASS), "org.apache.spark.deploy.master.Master",
                   "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web)],
        "worker": [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                   "--host", "127.0.0.1", "--port", str(worker_port), "--webui-port", str(worker_web),
                   "--cores", "2", "--memory", "2g"],
    }  # fmt: skip
    processes = []
    for name, command in commands.items():
        log = open(root / f"{name}.out", "w")
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if [w for w in _master_state(web).get("workers", []) if w["state"] == "ALIVE"]:
                    break
            except OSError:
                pass
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in root.glob("*.out"))
            assert time.monotonic() < deadline, f"the Spark cluster did not come up:\n{logs}"
            assert all(p.poll() is None for p in processes), f"a Spark daemon exited:\n{logs}"
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", web
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            process.wait(timeout=60)


@pytest.fixture(scope="module")
def bronze_home(kafka_broker, fresh_topics, tmp_path_factory) -> Settings:
    """Ten days of generated traffic, through Kafka, in bronze."""
    from streaming.generator import GeneratorConfig, generate
    from streaming.loader import Loader
    from streaming.producer import produce

    settings = replace(kafka_broker, home=tmp_path_factory.mktemp("cluster-bronze"), consumer_group="cluster-loader")
    config = GeneratorConfig(start_date=START, days=10, seed=31, kuaishou_users=500, wechat_users=500,
                             kuaishou_groups=20, wechat_groups=50, late_rate=0.02, duplicate_rate=0.01)  # fmt: skip
    produce(generate(config), settings.bootstrap_servers)
    Loader(settings, until_idle=True, idle_seconds=3).run()
    return settings


def _copy_bronze(source: Settings, home: Path, **changes) -> Settings:
    shutil.copytree(source.warehouse / "bronze", home / "warehouse" / "bronze")
    return replace(source, home=home, **changes)


def test_the_pipeline_on_a_cluster_equals_local_mode(cluster, bronze_home, tmp_path, monkeypatch):
    master, web = cluster
    on_cluster = _copy_bronze(bronze_home, tmp_path / "cluster", spark_master=master, spark_driver_memory="1g",
                              spark_shuffle_partitions=2)  # fmt: skip
    local = _copy_bronze(bronze_home, tmp_path / "local")

    # As the DAG's tasks do: Spark steps go through spark-submit, publish runs in-process.
    for key, value in on_cluster.describe().items():
        if value not in ("***", "None"):
            monkeypatch.setenv(key, value)
    for step in STEP_NAMES:
        if step_named(step).needs_spark:
            submit_step(on_cluster, step, AS_OF, run_id="cluster-run", triggered_by="test")
        else:
            from engagement.pipeline import run_step

            run_step(step, on_cluster, AS_OF, run_id="cluster-run", triggered_by="test")
    assert published_dates(on_cluster.warehouse) == [AS_OF]
    (record,) = list_runs(on_cluster.warehouse)
    assert (record["run_id"], record["status"]) == ("cluster-run", "success")
    # The work ran on the cluster: the master lists one finished application per Spark step.
    finished = [app["name"] for app in _master_state(web)["completedapps"]]
    assert sorted(finished) == sorted(f"engagement_daily.{s}.{AS_OF}" for s in STEP_NAMES if step_named(s).needs_spark)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    env.update(ENGAGEMENT_HOME=str(local.home), ENGAGEMENT_SPARK_MASTER="local[2]", PYSPARK_PYTHON=sys.executable)
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "run", "--as-of", AS_OF.isoformat()], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for table in GOLD_TABLES:
        assert gold_rows(on_cluster.warehouse, table, AS_OF) == gold_rows(local.warehouse, table, AS_OF), table
    assert len(gold_rows(local.warehouse, "daily_engagement", AS_OF)) > 10
