"""Errors a user can fix reach the terminal as one line that says what to do, with exit code 1.

Each test runs the real ``engagement`` program in a subprocess, the way a person would, and
provokes one kind of error for real (no broker listening, Java missing, a port taken, nothing
published, bad SQL). The re-created topic case needs a broker and lives beside its loader test
in ``test_loader_recreated_topic.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_query_and_settings import D1, _stage

from core.settings import Settings
from engagement.publish import publish
from streaming.broker import free_ports


def run_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``engagement ARGS`` in a fresh process with its own ENGAGEMENT_HOME."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_") or k == "ENGAGEMENT_KAFKA_LIBS"}
    broker_port, controller_port = free_ports(2)
    environ.update(
        ENGAGEMENT_HOME=str(home),
        ENGAGEMENT_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}",
        ENGAGEMENT_KAFKA_CONTROLLER_PORT=str(controller_port),
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "engagement.cli", *args], env=environ, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 1, no traceback, and the last line of stderr is the error, naming each needle."""
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert done.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def test_no_broker(tmp_path):
    port = free_ports(1)[0]
    done = run_cli(tmp_path, "topics", "create", env={"ENGAGEMENT_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert_one_line_error(done, f"No Kafka broker answers at 127.0.0.1:{port}", "engagement kafka start")


def test_java_missing(tmp_path):
    no_java = tmp_path / "bin"
    no_java.mkdir()
    env = {"PATH": str(no_java), "JAVA_HOME": ""}
    done = run_cli(tmp_path / "home", "kafka", "start", env=env)
    assert_one_line_error(done, "Java is not on PATH", "JAVA_HOME")


def test_port_in_use(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = run_cli(tmp_path, "kafka", "start", env={"ENGAGEMENT_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert_one_line_error(done, f"Port {port}", "in use")
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_nothing_published(tmp_path):
    done = run_cli(tmp_path, "query", "SELECT * FROM join_conversion")
    assert_one_line_error(done, "no gold tables are published yet", "engagement run --as-of")


@pytest.fixture()
def published_home(tmp_path: Path) -> Path:
    settings = Settings(home=tmp_path)
    _stage(settings, D1, 1)
    publish(settings, D1)
    return tmp_path


def test_bad_sql(published_home):
    done = run_cli(published_home, "query", "SELECT nonexistent_column FROM join_conversion")
    assert_one_line_error(done, "nonexistent_column", "tables: daily_engagement")
    # The same home answers a good query: the error was the SQL's.
    good = run_cli(published_home, "query", "SELECT count(*) AS n FROM join_conversion", "--format", "csv")
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["n", "1"]


def test_verbose_adds_the_traceback(tmp_path):
    done = run_cli(tmp_path, "--verbose", "query", "SELECT 1")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "QueryError" in done.stderr
    assert done.stderr.rstrip("\n").splitlines()[-1].startswith("error: no gold tables are published yet")


def test_bad_setting(tmp_path):
    done = run_cli(tmp_path, "config", env={"ENGAGEMENT_TIMEZONE": "Mars/Olympus"})
    assert_one_line_error(done, "ENGAGEMENT_TIMEZONE='Mars/Olympus'", "Asia/Shanghai")


def test_no_loader_workers(tmp_path):
    done = run_cli(tmp_path, "load", "--workers", "0")
    assert_one_line_error(done, "--workers must be >= 1, got 0")
