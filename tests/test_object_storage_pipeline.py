"""The loader and a daily run with the warehouse on a real S3-compatible server (SeaweedFS).

Generated traffic goes through Kafka twice: one loader writes a local folder, another an S3
bucket. The local daily run runs in this process; the S3 one is ``engagement run`` in its own
process, whose Spark reads and writes ``s3a://`` (hadoop-aws, fetched by Maven). Every gold
table published on S3 must hold the same rows as the local one, and the analysts' query, the
publication manifest and ``pipeline_runs`` must work from the bucket alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from gold_rows import gold_rows

from core.layout import published_dates
from core.storage import warehouse_store
from core.tables import GOLD_TABLES
from engagement import pipeline
from engagement.query import run_query
from engagement.runs import list_runs
from streaming.generator import GeneratorConfig, generate
from streaming.loader import Loader
from streaming.producer import produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
START = date(2026, 3, 1)
AS_OF = START + timedelta(days=11)


def test_loader_and_daily_run_on_object_storage_give_the_rows_of_a_local_folder(fresh_topics, object_store, spark, tmp_path):
    config = GeneratorConfig(
        start_date=START, days=14, seed=11, kuaishou_users=500, wechat_users=250, kuaishou_groups=15,
        wechat_groups=30, duplicate_rate=0.01, invalid_rate=0.002, late_rate=0.02,
    )  # fmt: skip
    sent = produce(generate(config), fresh_topics.bootstrap_servers)
    small = {"spark_shuffle_partitions": 2, "spark_driver_memory": "1g"}
    local = replace(fresh_topics, home=tmp_path / "local", consumer_group="local-warehouse", **small)
    on_s3 = replace(
        fresh_topics, home=tmp_path / "s3", consumer_group="s3-warehouse", warehouse_uri="s3://engagement/pipeline",
        s3_endpoint=object_store.endpoint, **small,
    )  # fmt: skip
    for settings in (local, on_s3):
        stats = Loader(settings, until_idle=True, idle_seconds=2).run()
        assert stats.consumed == sent

    pipeline.run_daily(spark, local, AS_OF)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_") or k in ("ENGAGEMENT_KAFKA_LIBS", "ENGAGEMENT_S3A_LIBS")}
    env.update(
        object_store.environment(),
        ENGAGEMENT_HOME=str(on_s3.home),
        ENGAGEMENT_WAREHOUSE_URI=on_s3.warehouse_uri,
        ENGAGEMENT_SPARK_SHUFFLE_PARTITIONS="2",
        ENGAGEMENT_SPARK_DRIVER_MEMORY="1g",
    )
    done = subprocess.run(
        [sys.executable, "-m", "engagement.cli", "run", "--as-of", AS_OF.isoformat()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (on_s3.home / "warehouse").exists(), "something was written to a local folder"
    # A quiet terminal: the run's progress and result, not Spark's, GX's or boto's log lines;
    # those are in the log files under ENGAGEMENT_HOME/logs.
    terminal = done.stdout + done.stderr
    for noise in ("log4j", "WARN", "INFO ", "py4j", "botocore", "great_expectations", "Quality gate"):
        assert noise not in terminal, f"{noise!r} on the terminal:\n{terminal[-3000:]}"
    assert "6 steps done" in terminal and f"{AS_OF}: published in" in terminal, terminal[-3000:]
    assert "Quality gate for layer 'gold': PASSED" in (on_s3.home / "logs" / "engagement-run.log").read_text()
    assert (on_s3.home / "logs" / "engagement-run.spark.log").exists()

    store = warehouse_store(on_s3)
    assert published_dates(store) == [AS_OF]
    for table in GOLD_TABLES:
        expected = gold_rows(local.warehouse, table, AS_OF)
        assert expected or table == "group_survival", f"{table} is empty: the data set is too small to compare"
        assert gold_rows(store, table, AS_OF) == expected, table
    daily = run_query(store, "SELECT sum(events) FROM daily_engagement").rows
    assert daily == run_query(local.warehouse, "SELECT sum(events) FROM daily_engagement").rows
    (run,) = list_runs(store)
    assert (run["as_of_date"], run["status"]) == (AS_OF.isoformat(), "success")
    assert all(r["passed"] for r in run["gate_results"].values())
