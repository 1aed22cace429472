"""Gold mirrored into a real PostgreSQL server (tests/postgres_fixture.py: one per session, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from postgres_fixture import new_database

from core import tables
from core.layout import gold_build_key
from core.settings import Settings
from core.storage import LocalStore
from core.tables import GOLD_TABLES
from engagement.postgres import PostgresPublishError, publish_to_postgres
from engagement.publish import new_build, publish, stage
from streaming.broker import free_ports
from streaming.bronze import arrow_schema

D1, D2 = date(2026, 3, 10), date(2026, 3, 11)


@pytest.fixture()
def url(postgres_server: str) -> str:
    """A fresh, empty database per test on the session's server."""
    return new_database(postgres_server, "gold_test")


M = date(2026, 3, 1)


def _gold_rows(as_of: date, marker: int) -> dict[str, dict]:
    """One row per gold table, written out from DESIGN section 5; ``marker`` (a count column)
    says which run wrote it."""
    return {
        "daily_engagement": dict(platform="wechat", event_date=date(2026, 3, 9), event_type="join", events=marker, users=1),
        "join_conversion": dict(
            platform="wechat", cohort_date=date(2026, 3, 2), funnel="invite", attempts=marker, conversions=0,
            conversion_rate=0.0,
        ),
        "retention_cohorts": dict(
            platform="wechat", cohort_date=date(2026, 3, 2), day_offset=7, cohort_users=marker, retained_users=0,
            retention_rate=None,
        ),
        "member_lifetime": dict(
            platform="kuaishou", cohort_month=M, users=marker, avg_lifetime_days=2.5, median_lifetime_days=2.0
        ),
        "group_health": dict(
            platform="wechat", group_id="g1", as_of_date=as_of, origin_channel="qr_code", first_event_date=M,
            last_event_date=as_of, members=marker, active_members_7d=1, silent_members_7d=marker - 1,
            inactive_members_14d=0, alive_30d=None,
        ),
        "group_survival": dict(
            platform="wechat", origin_channel=None, cohort_month=M, groups=marker, survived_30d=0, survival_rate_30d=0.0
        ),
        "cross_platform_propagation": dict(
            event_date=date(2026, 3, 9), likes=marker, propagated=0, propagation_rate=0.0,
            latency_p50_s=None, latency_p90_s=None, latency_p99_s=None,
        ),
        "cross_platform_overlap": dict(
            as_of_date=as_of, kuaishou_members=marker, wechat_members=0, both=0, overlap_rate=None
        ),
    }  # fmt: skip


def _stage(settings: Settings, as_of: date, marker: int) -> None:
    """Stage a build with one Parquet file per gold table, holding its row of :func:`_gold_rows`."""
    store, build = LocalStore(settings.warehouse), new_build()
    for table, row in _gold_rows(as_of, marker).items():
        directory = store.path(gold_build_key(table, as_of, build))
        directory.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([row], schema=arrow_schema(tables.GOLD[table])), directory / "part-0.parquet")
    stage(store, as_of, build)


def _publish(tmp_path: Path, url: str, as_of: date, marker: int) -> None:
    settings = Settings(home=tmp_path, postgres_url=url)
    _stage(settings, as_of, marker)
    publish(settings, as_of)


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_history_tables_hold_the_latest_run_and_snapshot_tables_every_date(tmp_path, url):
    _publish(tmp_path, url, D1, 1)
    _publish(tmp_path, url, D2, 2)
    assert _rows(url, "SELECT cohort_users, platform FROM gold.retention_cohorts") == [(2, "wechat")]
    assert _rows(url, "SELECT likes FROM gold.cross_platform_propagation") == [(2,)]
    assert _rows(url, "SELECT as_of_date, members FROM gold.group_health ORDER BY as_of_date") == [(D1, 1), (D2, 2)]
    assert _rows(url, "SELECT as_of_date, kuaishou_members FROM gold.cross_platform_overlap ORDER BY as_of_date") == [
        (D1, 1),
        (D2, 2),
    ]
    assert _rows(url, "SELECT as_of_date, row_counts->>'group_health' FROM gold._publications ORDER BY 1") == [
        (D1, "1"),
        (D2, "1"),
    ]


def test_republishing_a_date_gives_the_same_rows(tmp_path, url):
    _publish(tmp_path, url, D1, 1)
    settings = Settings(home=tmp_path, postgres_url=url)
    publish(settings, D1)  # a retried task: gold already in place, PostgreSQL loaded again
    assert publish_to_postgres(url, settings.warehouse, D1) == {table: 1 for table in GOLD_TABLES}
    assert _rows(url, "SELECT attempts FROM gold.join_conversion") == [(1,)]
    assert _rows(url, "SELECT as_of_date, members FROM gold.group_health") == [(D1, 1)]
    assert _rows(url, "SELECT count(*) FROM gold._publications") == [(1,)]


def test_backfilling_an_older_date_adds_snapshots_but_keeps_newer_history(tmp_path, url):
    _publish(tmp_path, url, D2, 2)
    _publish(tmp_path, url, D1, 1)
    assert _rows(url, "SELECT users FROM gold.member_lifetime") == [(2,)]
    assert _rows(url, "SELECT as_of_date, members FROM gold.group_health ORDER BY as_of_date") == [(D1, 1), (D2, 2)]
    loaded = publish_to_postgres(url, Settings(home=tmp_path).warehouse, D1)
    assert loaded == {"group_health": 1, "cross_platform_overlap": 1}


def test_tables_have_the_gold_columns_types_and_values(tmp_path, url):
    _publish(tmp_path, url, D1, 3)

    def columns(table: str) -> list[tuple]:
        return _rows(
            url,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            f"WHERE table_schema = 'gold' AND table_name = '{table}' ORDER BY ordinal_position",
        )

    assert columns("join_conversion") == [
        ("platform", "text", "NO"),
        ("cohort_date", "date", "NO"),
        ("funnel", "text", "NO"),
        ("attempts", "bigint", "NO"),
        ("conversions", "bigint", "NO"),
        ("conversion_rate", "double precision", "YES"),
    ]
    assert columns("group_health") == [
        ("platform", "text", "NO"),
        ("group_id", "text", "NO"),
        ("as_of_date", "date", "NO"),
        ("origin_channel", "text", "YES"),
        ("first_event_date", "date", "NO"),
        ("last_event_date", "date", "NO"),
        ("members", "bigint", "NO"),
        ("active_members_7d", "bigint", "NO"),
        ("silent_members_7d", "bigint", "NO"),
        ("inactive_members_14d", "bigint", "NO"),
        ("alive_30d", "boolean", "YES"),
    ]
    assert [c[:2] for c in columns("retention_cohorts")][2] == ("day_offset", "integer")
    assert _rows(url, "SELECT * FROM gold.group_health") == [
        ("wechat", "g1", D1, "qr_code", M, D1, 3, 1, 2, 0, None)
    ]
    assert _rows(url, "SELECT * FROM gold.member_lifetime") == [("kuaishou", M, 3, 2.5, 2.0)]


def test_unreachable_server_says_what_to_check_without_the_password(tmp_path):
    _publish(tmp_path, None, D1, 1)
    warehouse = Settings(home=tmp_path).warehouse
    (closed_port,) = free_ports(1)
    with pytest.raises(PostgresPublishError) as raised:
        publish_to_postgres(f"postgresql://engagement:s3cret-pw@127.0.0.1:{closed_port}/analytics", warehouse, D1)
    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert f"127.0.0.1:{closed_port}/analytics" in message
    assert "host, port and database" in message
    with pytest.raises(PostgresPublishError) as raised:
        publish_to_postgres("postgresql://engagement:s3cret-pw@127.0.0.1:notaport/analytics", warehouse, D1)
    assert "s3cret-pw" not in str(raised.value)


def test_airflow_metadata_works_on_postgresql_with_the_installed_driver(url, tmp_path):
    # docker-compose.yml gives Airflow its own PostgreSQL through psycopg 3 (postgresql+psycopg),
    # the driver the project installs, for Airflow's sync and async engines alike (the async one
    # would otherwise need asyncpg); migrate a real database with it and read it back.
    psycopg_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=psycopg_url, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=psycopg_url)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(url, "SELECT count(*) FROM dag") == [(0,)]
    assert _rows(url, "SELECT count(*) FROM alembic_version") == [(1,)]


ANALYST = "analyst_ro"


def _analyst_url(url: str) -> str:
    return url.replace("postgresql://engagement@", f"postgresql://{ANALYST}@", 1)


def test_the_analyst_role_reads_gold_and_is_refused_writes_and_other_schemas(tmp_path, url):
    settings = Settings(home=tmp_path, postgres_url=url, postgres_analyst_role=ANALYST, postgres_analyst_password="an4lyst-pw")
    _stage(settings, D1, 3)
    publish(settings, D1)
    with psycopg.connect(url, autocommit=True) as conn:  # what else the database holds
        conn.execute("CREATE SCHEMA staging")
        conn.execute("CREATE TABLE staging.payroll (amount int)")
        conn.execute("INSERT INTO staging.payroll VALUES (1)")
        conn.execute("CREATE TABLE public.notes (note text)")
    owner_view = {table: _rows(url, f"SELECT * FROM gold.{table} ORDER BY 1") for table in GOLD_TABLES}

    with psycopg.connect(_analyst_url(url)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ANALYST,)
        for table in GOLD_TABLES:
            assert conn.execute(f"SELECT * FROM gold.{table} ORDER BY 1").fetchall() == owner_view[table], table
        assert conn.execute("SELECT count(*) FROM gold._publications").fetchone() == (1,)

    writes = (
        "INSERT INTO gold.member_lifetime VALUES ('wechat', '2026-03-01', 1, 1.0, 1.0)",
        "UPDATE gold.daily_engagement SET events = 0",
        "DELETE FROM gold.group_health",
        "CREATE TABLE gold.mine (x int)",
        "DROP TABLE gold.join_conversion",
        "CREATE TABLE public.mine (x int)",
    )
    for statement in writes:
        with psycopg.connect(_analyst_url(url)) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)  # its sessions start read-only ...
        with psycopg.connect(_analyst_url(url), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # ... and asking for more does not help
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    for other in ("staging.payroll", "public.notes"):
        with psycopg.connect(_analyst_url(url)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {other}")
    assert {table: _rows(url, f"SELECT * FROM gold.{table} ORDER BY 1") for table in GOLD_TABLES} == owner_view

    # The next date's publication (new rows, same tables) stays readable; the password is stored
    # (hashed), the role can log in and holds no other power.
    _stage(settings, D2, 4)
    publish(settings, D2)
    with psycopg.connect(_analyst_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM gold.group_health").fetchone() == (2,)
    role = _rows(url, f"SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = '{ANALYST}'")
    assert role == [(True, False, False, False, True)]
    assert "an4lyst-pw" not in f"{settings.describe()} {settings!r}"  # `engagement config`, logs


def test_a_publisher_that_may_not_create_the_analyst_role_says_what_to_do(tmp_path, url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE publisher_plain LOGIN")
        conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} OWNER TO publisher_plain")
    plain = url.replace("postgresql://engagement@", "postgresql://publisher_plain@", 1)
    settings = Settings(home=tmp_path, postgres_url=plain, postgres_analyst_role="analyst_missing")
    _stage(settings, D1, 3)
    with pytest.raises(PostgresPublishError) as raised:
        publish(settings, D1)
    assert "CREATEROLE" in str(raised.value) and "ENGAGEMENT_POSTGRES_ANALYST_ROLE" in str(raised.value)
    assert _rows(url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'gold'") == [(0,)]  # rolled back
    # Once an administrator created the role, the same publisher grants it gold.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE analyst_missing LOGIN")
    publish(settings, D1)
    granted = _rows(url, "SELECT has_table_privilege('analyst_missing', 'gold.daily_engagement', 'SELECT')")
    assert granted == [(True,)]
