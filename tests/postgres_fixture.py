"""``postgres_server``: one real PostgreSQL server per test session, started on first use.

    def test_something(postgres_server):        # the server's URL (trust auth, user engagement)
        url = new_database(postgres_server, "my_test")   # a fresh, empty database on it

Gold's mirror (tests/test_postgres.py) and Airflow's metadata database under the real scheduler
(tests/test_airflow_scheduler.py) each take their own databases on it. The server binaries come
from the system's PostgreSQL (``make postgres-server`` installs them); the server listens on
127.0.0.1 on a free port, with its data in a temporary folder removed at the end.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from streaming.broker import free_ports


def _postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL (apt-get install postgresql)")
    return Path(candidates[-1]).parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1; its URL (trust auth, user ``engagement``)."""
    bin_dir = _postgres_bin()
    # Not tmp_path_factory: its parent folder is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="engagement-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, user="postgres", group="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    (port,) = free_ports(1)
    data = root / "data"

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


def new_database(server_url: str, prefix: str) -> str:
    """Create a new, empty database on the server; its URL (same user and host)."""
    name = f"{prefix}_{next(_database_numbers)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name
