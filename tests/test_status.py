"""``engagement status`` for operators: what needs attention, and the exit code a probe reads.

Codes (README, "Operate"): 0 fine, 3 no broker, 4 lag above the threshold, 5 nothing
published, 6 last run failed, 7 gold stale; with several problems, the smallest code.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from test_cli_errors import run_cli
from test_query_and_settings import D1, _stage

from core.settings import Settings
from engagement import runs
from engagement.publish import publish
from engagement.status import problems


def _status(**overrides) -> dict:
    """A status as pipeline_status builds it: broker up, no lag, one fresh successful run."""
    status = {
        "broker": {"healthy": True, "answers": True},
        "partitions": {"engagement.kuaishou.events[0]": {"end": 10, "committed": 10, "lag": 0}},
        "published": ["2026-03-10"],
        "runs": {"last": {"status": "success"}},
        "freshness": {
            "last_complete_day": "2026-03-10",
            "tables": {"daily_engagement": {"as_of_date": "2026-03-10", "days_behind": 0}},
        },
    }
    status.update(overrides)
    return status


def codes(status: dict, **settings) -> list[int]:
    return [code for code, _ in problems(Settings(**settings), status)]


def test_nothing_to_report():
    assert codes(_status()) == []


def test_each_problem_has_its_code():
    assert codes(_status(broker={"healthy": False, "answers": False}, partitions=None)) == [3]
    # Not this home's broker, but one answers at the address: no problem.
    assert codes(_status(broker={"healthy": False, "answers": True})) == []
    lagging = {"t[0]": {"end": 500, "committed": 100, "lag": 400}, "t[1]": {"end": 7, "committed": None, "lag": 7}}
    assert codes(_status(partitions=lagging), status_max_lag=406) == [4]
    assert codes(_status(partitions=lagging), status_max_lag=407) == []
    assert codes(_status(published=[])) == [5]
    failed = {"run_id": "r1", "as_of_date": "2026-03-10", "status": "failed", "failed_step": "validate_gold", "error": "x"}
    assert codes(_status(runs={"last": failed})) == [6]
    stale = {"last_complete_day": "2026-03-13", "tables": {"daily_engagement": {"as_of_date": "2026-03-10", "days_behind": 3}}}
    assert codes(_status(freshness=stale), status_max_stale_days=2) == [7]
    assert codes(_status(freshness=stale), status_max_stale_days=3) == []


def test_problems_say_what_to_do():
    failed = {"run_id": "r1", "as_of_date": "2026-03-10", "status": "failed", "failed_step": "validate_gold", "error": "boom"}
    (text,) = [t for _, t in problems(Settings(), _status(runs={"last": failed}))]
    assert "r1" in text and "2026-03-10" in text and "validate_gold" in text and "boom" in text


def test_no_broker_exits_3(tmp_path):
    done = run_cli(tmp_path, "status")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "ATTENTION (3): no Kafka broker answers" in done.stdout
    assert "ATTENTION (5): nothing is published yet" in done.stdout


@pytest.mark.integration
def test_last_run_failed_exits_6_and_shows_the_run(kafka_broker, tmp_path: Path):
    settings = Settings(home=tmp_path)
    _stage(settings, D1, 1)
    publish(settings, D1)
    runs.start_step(settings.warehouse, "manual__1", date(2026, 3, 11), "manual")
    runs.fail_run(settings.warehouse, "manual__1", "validate_gold", RuntimeError("conversion_rate above 1"))
    env = {"ENGAGEMENT_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers, "ENGAGEMENT_STATUS_MAX_LAG": str(10**12),
           "ENGAGEMENT_STATUS_MAX_STALE_DAYS": str(10**6)}  # fmt: skip
    done = run_cli(tmp_path, "status", env=env)
    assert done.returncode == 6, done.stdout + done.stderr
    assert "failed in validate_gold: conversion_rate above 1" in done.stdout
    as_json = run_cli(tmp_path, "status", "--format", "json", env=env)
    assert as_json.returncode == 6
    status = json.loads(as_json.stdout)
    assert status["runs"]["last"]["run_id"] == "manual__1"
    assert status["runs"]["last_success"] is None
    assert status["freshness"]["tables"]["join_conversion"]["as_of_date"] == "2026-03-10"
