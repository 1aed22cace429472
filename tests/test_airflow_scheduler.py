"""engagement_daily under a real Airflow: its own scheduler, dag-processor and api-server
(LocalExecutor, metadata in PostgreSQL, a temporary AIRFLOW_HOME, free ports), the project's DAG
folder, and generated traffic loaded through Kafka into bronze.

* the scheduler's own run publishes the last complete day in the reporting zone, never today;
* a run triggered through the REST API for a named day publishes that day;
* ``airflow backfill create`` over two days gives the same gold rows as running the days one
  at a time with ``engagement run``;
* a failing quality gate fails the run and leaves the previous publication visible.

Each DAG run starts Spark once per task, so this module takes several minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from gold_rows import gold_rows
from postgres_fixture import new_database

from core import layout
from core.contract import KUAISHOU_TOPIC
from core.layout import published_dates
from core.storage import LocalStore
from core.tables import GOLD_TABLES
from engagement.runs import list_runs
from engagement.schedule import last_complete_day
from streaming import bronze
from streaming.broker import free_ports
from streaming.loader import route

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TZ = "Asia/Shanghai"
ALLOWANCE = 60
RUN_TIMEOUT = 900


def _today() -> date:
    return datetime.now(ZoneInfo(TZ)).date()


@pytest.fixture(scope="module")
def loaded(kafka_broker, fresh_topics, tmp_path_factory):
    """Nine days of generated traffic up to today (reporting zone), through Kafka into bronze."""
    from streaming.generator import GeneratorConfig, generate
    from streaming.loader import Loader
    from streaming.producer import produce

    settings = replace(
        kafka_broker, home=tmp_path_factory.mktemp("airflow-engagement"), consumer_group="airflow-loader", timezone=TZ
    )
    config = GeneratorConfig(
        start_date=_today() - timedelta(days=8), days=9, seed=23, timezone=TZ,
        kuaishou_users=400, wechat_users=400, kuaishou_groups=20, wechat_groups=40,
    )  # fmt: skip
    produce(generate(config), settings.bootstrap_servers)
    Loader(settings, until_idle=True, idle_seconds=3).run()
    return settings


@dataclass
class Airflow:
    url: str
    env: dict[str, str]
    home: Path
    engagement_home: Path

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs(self) -> list[dict]:
        return self.api("GET", "/api/v2/dags/engagement_daily/dagRuns?limit=100")["dag_runs"]

    def wait_for(self, accept, what: str, timeout: float = RUN_TIMEOUT) -> list[dict]:
        """Poll the DAG runs until ``accept(runs)`` is true and every accepted run has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chosen = [r for r in self.runs() if accept(r)]
            if chosen and all(r["state"] in ("success", "failed") for r in chosen):
                return chosen
            time.sleep(5)
        raise AssertionError(f"timed out waiting for {what}: {self.runs()}\n{self.logs()}")

    def airflow_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=300
        )

    def logs(self) -> str:
        tails = []
        for log in sorted(self.home.glob("*.out")):
            tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        for log in sorted((self.home / "logs").rglob("*.log"))[-3:]:
            tails.append(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(tails)


@pytest.fixture(scope="module")
def airflow(loaded, postgres_server, tmp_path_factory):
    """Airflow's scheduler, dag-processor and api-server on free ports, sharing a new home and a
    new metadata database on the session's PostgreSQL server."""
    home = tmp_path_factory.mktemp("airflow-home")
    metadata = new_database(postgres_server, "airflow_scheduler").replace("postgresql://", "postgresql+psycopg://", 1)
    port, log_server_port = free_ports(2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ENGAGEMENT_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # PostgreSQL, as in docker-compose.yml, not SQLite: SQLite has one writer at a time, and
        # with the day's Spark jobs on both cores `backfill create` failed twice (in CI, even
        # with a 60 s busy timeout) on "database is locked" while the scheduler held the lock.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
        # A task's first call to the API server ("the task is running", which locks the task's
        # row) took 5.2 s once on PostgreSQL, 6 s after the API server had started: the task
        # gave up at the default timeout of 5 s and failed before it began.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server_port),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": "engagement-test-only-" + os.urandom(8).hex(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "ENGAGEMENT_HOME": str(loaded.home),
        "ENGAGEMENT_TIMEZONE": TZ,
        "ENGAGEMENT_LATE_ALLOWANCE_MINUTES": str(ALLOWANCE),
        "ENGAGEMENT_DAG_RETRIES": "0",
        "ENGAGEMENT_SPARK_DRIVER_MEMORY": "1g",
        "ENGAGEMENT_SPARK_SHUFFLE_PARTITIONS": "2",
        "ENGAGEMENT_BOOTSTRAP_SERVERS": loaded.bootstrap_servers,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    handle = Airflow(f"http://127.0.0.1:{port}", env, home, loaded.home)
    migrated = handle.airflow_cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    processes = []
    for component in ("scheduler", "dag-processor", "api-server"):
        out = open(home / f"{component}.out", "w")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "airflow", component],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health = handle.api("GET", "/api/v2/monitor/health")
                if health["scheduler"]["status"] == "healthy" and health["dag_processor"]["status"] == "healthy":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"Airflow did not become healthy\n{handle.logs()}"
            assert all(p.poll() is None for p in processes), f"an Airflow component exited\n{handle.logs()}"
            time.sleep(2)
        yield handle
    finally:
        for process in processes:
            with _suppress():
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is ProcessLookupError


def _published(airflow: Airflow) -> list[date]:
    return published_dates(airflow.engagement_home / "warehouse")


def test_the_scheduler_publishes_the_last_complete_day_never_today(airflow):
    (run,) = airflow.wait_for(lambda r: r["run_type"] == "scheduled", "the scheduler's own run")
    assert run["state"] == "success", airflow.logs()
    run_after = datetime.fromisoformat(run["run_after"].replace("Z", "+00:00"))
    expected = last_complete_day(run_after, timezone=TZ, allowance_minutes=ALLOWANCE)
    assert _published(airflow) == [expected]
    assert run_after.astimezone(ZoneInfo(TZ)).date() not in _published(airflow)
    # The run started only once the day it computes had ended, plus the allowance.
    day_end = datetime.combine(expected + timedelta(days=1), datetime.min.time(), ZoneInfo(TZ))
    assert run_after >= day_end + timedelta(minutes=ALLOWANCE)
    (record,) = [r for r in list_runs(airflow.engagement_home / "warehouse") if r["run_id"] == run["dag_run_id"]]
    assert (record["as_of_date"], record["triggered_by"], record["status"]) == (expected.isoformat(), "scheduled", "success")
    assert record["gate_results"]["gold"]["passed"] is True


def test_a_rest_api_run_for_a_named_day_publishes_that_day(airflow):
    day = _today() - timedelta(days=5)
    created = airflow.api("POST", "/api/v2/dags/engagement_daily/dagRuns", {"logical_date": None, "conf": {"as_of_date": day.isoformat()}})
    (run,) = airflow.wait_for(lambda r: r["dag_run_id"] == created["dag_run_id"], "the REST-triggered run")
    assert run["state"] == "success", airflow.logs()
    assert day in _published(airflow)
    (record,) = [r for r in list_runs(airflow.engagement_home / "warehouse") if r["run_id"] == run["dag_run_id"]]
    # Nobody logs in to this test's api-server (all requests are admin): Airflow names the user "Anonymous".
    assert (record["as_of_date"], record["triggered_by"], record["status"]) == (day.isoformat(), "manual:Anonymous", "success")


def test_backfill_gives_the_same_rows_as_running_the_days_one_at_a_time(airflow, tmp_path):
    first, last = _today() - timedelta(days=4), _today() - timedelta(days=3)
    zone = ZoneInfo(TZ)
    # Airflow selects backfill runs by when they were due: the run for day D is due at
    # D+1 00:00 + allowance in the reporting zone.
    due = [datetime.combine(d + timedelta(days=1), datetime.min.time(), zone) + timedelta(minutes=ALLOWANCE) for d in (first, last)]
    done = airflow.airflow_cli(
        "backfill", "create", "--dag-id", "engagement_daily", "--from-date", due[0].isoformat(), "--to-date", due[1].isoformat()
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    runs = airflow.wait_for(lambda r: r["run_type"] == "backfill", "the backfill runs")
    assert len(runs) == 2 and all(r["state"] == "success" for r in runs), (runs, airflow.logs())
    assert {first, last} <= set(_published(airflow))

    # The same two days, one at a time, without Airflow, over a copy of the same bronze.
    one_by_one = tmp_path / "one-by-one"
    shutil.copytree(airflow.engagement_home / "warehouse" / "bronze", one_by_one / "warehouse" / "bronze")
    env = {**airflow.env, "ENGAGEMENT_HOME": str(one_by_one)}
    for day in (first, last):
        cli = subprocess.run([sys.executable, "-m", "engagement.cli", "run", "--as-of", day.isoformat()], env=env,
                             capture_output=True, text=True, timeout=900)  # fmt: skip
        assert cli.returncode == 0, cli.stderr[-3000:]
    for day in (first, last):
        for table in GOLD_TABLES:
            backfilled = gold_rows(airflow.engagement_home / "warehouse", table, day)
            assert backfilled == gold_rows(one_by_one / "warehouse", table, day), (table, day)
        assert gold_rows(one_by_one / "warehouse", "daily_engagement", day), "no rows at all: nothing was compared"


def test_a_failing_gate_fails_the_run_and_keeps_the_previous_publication(airflow):
    warehouse = airflow.engagement_home / "warehouse"
    before = _published(airflow)
    latest_rows = gold_rows(warehouse, "join_conversion", before[-1])
    # A bronze file that breaks the contract (what a broken writer upstream would leave).
    row = route(KUAISHOU_TOPIC, 9, 0, None, json.dumps({
        "event_id": "bad-1", "schema_version": 1, "event_type": "like", "platform": "kuaishou", "user_id": "u",
        "event_time": "2026-03-01T12:00:00Z", "content_id": "c"}).encode(), None, datetime.now(timezone.utc)).row  # fmt: skip
    row["event_id"] = None
    bronze.publish_range(
        LocalStore(warehouse), layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 9, layout.OffsetRange(0, 0),
        pa.Table.from_pylist([row], schema=bronze.BRONZE_EVENTS_SCHEMA),
        pa.Table.from_pylist([], schema=bronze.QUARANTINE_SCHEMA),
    )  # fmt: skip
    day = _today() - timedelta(days=2)
    created = airflow.api("POST", "/api/v2/dags/engagement_daily/dagRuns", {"logical_date": None, "conf": {"as_of_date": day.isoformat()}})
    (run,) = airflow.wait_for(lambda r: r["dag_run_id"] == created["dag_run_id"], "the run with a bad bronze file")
    assert run["state"] == "failed"
    assert _published(airflow) == before
    assert gold_rows(warehouse, "join_conversion", before[-1]) == latest_rows
    (record,) = [r for r in list_runs(warehouse) if r["run_id"] == run["dag_run_id"]]
    assert (record["status"], record["failed_step"]) == ("failed", "validate_bronze")
    assert record["gate_results"]["bronze"]["passed"] is False
    assert "event_id" in record["error"]
    # Analysts still get the previous publication.
    query = subprocess.run([sys.executable, "-m", "engagement.cli", "query", "SELECT count(*) FROM join_conversion",
                            "--format", "csv"], env=airflow.env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert query.returncode == 0 and query.stdout.split()[1] == str(len(latest_rows)), query.stderr
