"""Gold mirrored into a real PostgreSQL server (started once for this module, no mocks)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engagement.postgres import PostgresPublishError, publish_to_postgres
from engagement.settings import Settings
from engagement.warehouse import GOLD_TABLES, SNAPSHOT_TABLES, staging_path
from jobs.pipeline import publish

D1, D2 = date(2026, 3, 10), date(2026, 3, 11)


def _postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL (apt-get install postgresql)")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    """A throwaway PostgreSQL server on 127.0.0.1; its URL (trust auth, user ``engagement``)."""
    bin_dir = _postgres_bin()
    # Not tmp_path_factory: its parent folder is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="engagement-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, user="postgres", group="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run(as_postgres + list(args), check=True, capture_output=True, text=True)

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "engagement", "--no-sync", "-E", "UTF8")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    try:
        run(str(bin_dir / "pg_ctl"), "start", "-w", "-D", str(data), "-l", str(root / "server.log"), "-o", options)
    except subprocess.CalledProcessError:
        log = root / "server.log"
        pytest.fail(f"PostgreSQL did not start:\n{log.read_text() if log.exists() else '(no log)'}")
    try:
        yield f"postgresql://engagement@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast")
        shutil.rmtree(root, ignore_errors=True)


_database_numbers = itertools.count()


@pytest.fixture()
def url(server_url: str) -> str:
    """A fresh, empty database per test on the module's server."""
    name = f"gold_test_{next(_database_numbers)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def _stage(settings: Settings, as_of: date, marker: int) -> None:
    """Stage a one-row Parquet file per gold table whose ``marker`` says which run wrote it."""
    for table in GOLD_TABLES:
        directory = staging_path(settings.warehouse, table, as_of)
        directory.mkdir(parents=True)
        fields = [("marker", pa.int64()), ("platform", pa.string())]
        row: dict[str, list] = {"marker": [marker], "platform": ["wechat"]}
        if table == "daily_engagement":  # one table carries every mapped type
            fields += [
                ("activity_date", pa.date32()),
                ("active_members", pa.int32()),
                ("messages_per_member", pa.float64()),
                ("is_weekend", pa.bool_()),
                ("first_event_at", pa.timestamp("us", tz="UTC")),
            ]
            row |= {
                "activity_date": [date(2026, 3, 9)],
                "active_members": [7],
                "messages_per_member": [2.5],
                "is_weekend": [False],
                "first_event_at": [datetime(2026, 3, 9, 8, 30, tzinfo=timezone.utc)],
            }
        if table in SNAPSHOT_TABLES:
            fields.append(("as_of_date", pa.date32()))
            row["as_of_date"] = [as_of]
        pq.write_table(pa.table(row, schema=pa.schema(fields)), directory / "part-0.parquet")


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
    assert _rows(url, "SELECT marker, platform FROM gold.retention_cohorts") == [(2, "wechat")]
    assert _rows(url, "SELECT marker FROM gold.cross_platform_propagation") == [(2,)]
    assert _rows(url, "SELECT as_of_date, marker FROM gold.group_health ORDER BY as_of_date") == [(D1, 1), (D2, 2)]
    assert _rows(url, "SELECT as_of_date, marker FROM gold.cross_platform_overlap ORDER BY as_of_date") == [
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
    assert _rows(url, "SELECT marker FROM gold.join_conversion") == [(1,)]
    assert _rows(url, "SELECT as_of_date, marker FROM gold.group_health") == [(D1, 1)]
    assert _rows(url, "SELECT count(*) FROM gold._publications") == [(1,)]


def test_backfilling_an_older_date_adds_snapshots_but_keeps_newer_history(tmp_path, url):
    _publish(tmp_path, url, D2, 2)
    _publish(tmp_path, url, D1, 1)
    assert _rows(url, "SELECT marker FROM gold.member_lifetime") == [(2,)]
    assert _rows(url, "SELECT as_of_date, marker FROM gold.group_health ORDER BY as_of_date") == [(D1, 1), (D2, 2)]
    loaded = publish_to_postgres(url, Settings(home=tmp_path).warehouse, D1)
    assert loaded == {"group_health": 1, "cross_platform_overlap": 1}


def test_column_types_follow_the_parquet_schema(tmp_path, url):
    _publish(tmp_path, url, D1, 1)
    types = _rows(
        url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'gold' AND table_name = 'daily_engagement' ORDER BY ordinal_position",
    )
    assert types == [
        ("marker", "bigint"),
        ("platform", "text"),
        ("activity_date", "date"),
        ("active_members", "integer"),
        ("messages_per_member", "double precision"),
        ("is_weekend", "boolean"),
        ("first_event_at", "timestamp with time zone"),
    ]
    assert _rows(url, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'gold' "
                 "AND table_name = 'group_health' AND column_name = 'as_of_date'") == [("date",)]
    assert _rows(url, "SELECT activity_date, active_members, messages_per_member, is_weekend, first_event_at "
                 "FROM gold.daily_engagement") == [
        (date(2026, 3, 9), 7, 2.5, False, datetime(2026, 3, 9, 8, 30, tzinfo=timezone.utc))
    ]


def test_unreachable_server_says_what_to_check_without_the_password(tmp_path):
    _publish(tmp_path, None, D1, 1)
    warehouse = Settings(home=tmp_path).warehouse
    closed_port = _free_port()
    with pytest.raises(PostgresPublishError) as raised:
        publish_to_postgres(f"postgresql://engagement:s3cret-pw@127.0.0.1:{closed_port}/analytics", warehouse, D1)
    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert f"127.0.0.1:{closed_port}/analytics" in message
    assert "host, port and database" in message
    with pytest.raises(PostgresPublishError) as raised:
        publish_to_postgres("postgresql://engagement:s3cret-pw@127.0.0.1:notaport/analytics", warehouse, D1)
    assert "s3cret-pw" not in str(raised.value)
