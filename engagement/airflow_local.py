"""Run ``engagement_daily`` with real Airflow on one machine: SQLite metadata under
``$ENGAGEMENT_HOME/airflow`` and ``dag.test()`` (every task in this process, in order).

Airflow reads its configuration when it is first imported, so :func:`prepare_airflow` must run
before anything imports ``airflow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from core.errors import UserError
from core.settings import Settings

DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"
DAG_ID = "engagement_daily"


class AirflowRunError(UserError):
    pass


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's settings for a local run: an existing ``AIRFLOW_HOME`` is respected, otherwise
    ``$ENGAGEMENT_HOME/airflow`` with its own SQLite database."""
    home = Path(os.environ.get("AIRFLOW_HOME") or (settings.home / "airflow")).resolve()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        or f"sqlite:///{home / 'airflow.db'}",
    }


def prepare_airflow(settings: Settings) -> None:
    """Point Airflow at its home and create its metadata database once."""
    env = airflow_env(settings)
    os.environ.update(env)
    # The tasks read ENGAGEMENT_* settings from the environment: make the in-process run see
    # exactly the settings this process uses.
    for key, value in settings.describe().items():
        if value != "***" and value != "None":
            os.environ[key] = value
    os.environ["ENGAGEMENT_HOME"] = str(settings.home.resolve())
    home = Path(env["AIRFLOW_HOME"])
    marker = home / ".engagement-migrated"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise AirflowRunError(
            f"`airflow db migrate` failed for AIRFLOW_HOME={home}: check that the folder is writable "
            "and AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (if set) reachable; --verbose shows Airflow's output",
            details=done.stderr[-2000:],
        )
    marker.touch()


def run_dag(settings: Settings, as_of: date) -> str:
    """Run one ``engagement_daily`` DAG run for ``as_of`` with ``dag.test()``; return its state."""
    prepare_airflow(settings)
    import warnings

    # Airflow's in-process test client still imports starlette's, which warns about httpx.
    warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*")
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise AirflowRunError(f"the DAG files do not import: {bag.import_errors}")
    dag = bag.dags[DAG_ID]
    # A local run should fail fast: retries (5 minutes apart) are for a real scheduler.
    for task in dag.tasks:
        task.retries = 0
    logical_date = pendulum.datetime(as_of.year, as_of.month, as_of.day, tz=settings.timezone)
    run = dag.test(logical_date=logical_date)
    state = str(getattr(run.state, "value", run.state))
    if state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if str(getattr(ti.state, "value", ti.state)) != "success"]
        raise AirflowRunError(f"DAG run for {as_of} ended {state}; tasks not successful: {', '.join(failed)}")
    return state
