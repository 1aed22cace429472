"""The Airflow DAG: imports cleanly, follows the team's policy, stays thin at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parent.parent / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "engagement_daily" in dagbag.dags


def test_policy(dagbag):
    dag = dagbag.dags["engagement_daily"]
    assert dag.tags, "every DAG has tags"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md and "engagement_daily" in dag.doc_md
    for task in dag.tasks:
        assert task.retries >= 1, f"{task.task_id} has no retries"
        assert task.retry_exponential_backoff > 1, f"{task.task_id} retries without back-off"
        assert task.on_failure_callback, f"{task.task_id} has no failure callback"
    assert "as_of_date" in dag.params


def test_schedule_waits_for_the_day_to_end_in_the_reporting_zone(dagbag):
    # Default settings: Asia/Shanghai, 60 minutes' allowance -> 01:00 Shanghai every day, and a
    # data interval of a day and an hour, so the run for D starts at D+1 01:00.
    timetable = dagbag.dags["engagement_daily"].timetable
    assert type(timetable).__name__ == "CronTriggerTimetable"
    assert timetable.serialize()["expression"] == "0 1 * * *"
    assert str(timetable.serialize()["timezone"]) == "Asia/Shanghai"


def test_tasks_in_order(dagbag):
    dag = dagbag.dags["engagement_daily"]
    order = ["validate_bronze", "build_silver", "validate_silver", "build_gold", "validate_gold", "publish"]
    for upstream, downstream in zip(order, order[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("validate_bronze").upstream_task_ids == set()


def test_parsing_does_not_import_heavy_modules():
    # Parse the DAG file in a fresh interpreter and check that Spark and GX were not imported.
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('pyspark', 'great_expectations', 'kafka') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(DAGS / "engagement_daily.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy modules imported at parse time: {done.stdout}"
