"""
### engagement_daily

One run per day `D` (a calendar day in the reporting time zone, `ENGAGEMENT_TIMEZONE`). The
scheduled run for `D` starts once `D` has ended there plus `ENGAGEMENT_LATE_ALLOWANCE_MINUTES`,
and computes all eight gold tables **as of D**, incrementally: the bronze that arrived since the
last run is added to silver, and the gold rows it can reach (late events for earlier days
included) are recomputed. It publishes only if every quality gate passes:

`validate_bronze` → `build_silver` → `validate_silver` → `build_gold` → `validate_gold` → `publish`

* Manual runs and backfills name their day: trigger with `{"as_of_date": "YYYY-MM-DD"}` or a
  logical date on that day; a manual run with neither computes the last complete day.
* Idempotent: a re-run of D over the same input gives the same rows. Trigger with
  `{"full_refresh": true}` to rebuild silver from all of bronze (repairs).
* A failed critical expectation fails its task; nothing of that date is published and the
  previously published tables stay visible to analysts. The failure is logged with its date,
  step and expectations, and recorded in `pipeline_runs`.
* Spark steps run in the task's process (local mode) unless `ENGAGEMENT_SPARK_MASTER` names a
  cluster: then each is submitted there with `spark-submit` (`engagement.submit`).
* Logic lives in `engagement.pipeline` (its `STEPS` give the tasks and their order, the same
  functions `engagement run --as-of D` calls) and `engagement.schedule`; this file only wires.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, chain, dag, task

from core.settings import Settings
from engagement.pipeline import STEP_NAMES
from engagement.schedule import daily_timetable, on_task_failure

# Read at parse time for the schedule only: environment variables, no network, no Variables.
SETTINGS = Settings.from_env()


@task
def run_step(step: str) -> dict:
    """Run one pipeline step for this run's day (Spark and GX are imported only here)."""
    from airflow.sdk import get_current_context

    from engagement import progress
    from engagement.pipeline import run_step as run
    from engagement.pipeline import step_named
    from engagement.schedule import run_as_of, triggered_by
    from engagement.submit import is_cluster, submit_step

    settings = Settings.from_env()
    context = get_current_context()
    as_of = run_as_of(context, timezone=settings.timezone, allowance_minutes=settings.late_allowance_minutes)
    run_id, trigger = context["dag_run"].run_id, triggered_by(context)
    full_refresh = bool(context["params"].get("full_refresh"))
    # Under `engagement demo` a progress bar says the same; in a task log these lines are the story.
    say = print if not progress.active() else (lambda *_: None)
    say(f"engagement_daily: {step} as of {as_of}" + (" (full refresh)" if full_refresh else ""))
    if step_named(step).needs_spark and is_cluster(settings.spark_master):
        submit_step(settings, step, as_of, run_id=run_id, triggered_by=trigger, full_refresh=full_refresh)
        return {"submitted_to": settings.spark_master, "step": step, "as_of_date": as_of.isoformat()}
    result = run(step, settings, as_of, run_id=run_id, triggered_by=trigger, full_refresh=full_refresh)
    if hasattr(result, "summary"):
        say(result.summary())
        return result.to_dict()
    return result


@dag(
    dag_id="engagement_daily",
    schedule=daily_timetable(timezone=SETTINGS.timezone, allowance_minutes=SETTINGS.late_allowance_minutes),
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.timezone),
    catchup=False,
    max_active_runs=1,
    tags=["engagement", "spark", "gold"],
    params={
        "as_of_date": Param(
            None, type=["null", "string"], format="date", description="the day to compute (manual runs and backfills)"
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            description="rebuild silver from all of bronze and gold whole (repairs; daily runs are incremental)",
        ),
    },
    default_args={
        "owner": "data-platform",
        "retries": SETTINGS.dag_retries,
        "retry_delay": timedelta(seconds=SETTINGS.dag_retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": on_task_failure,
    },
    doc_md=__doc__,
)
def engagement_daily():
    chain(*(run_step.override(task_id=step)(step) for step in STEP_NAMES))


engagement_daily()
