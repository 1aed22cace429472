"""
### engagement_daily

One run per logical date `D` (a calendar day in the reporting time zone, Asia/Shanghai by
default). The run recomputes silver and all eight gold tables **as of D** from the whole of
bronze, so late events for earlier days are folded in, and publishes them only if every
quality gate passes:

`validate_bronze` → `build_silver` → `validate_silver` → `build_gold` → `validate_gold` → `publish`

* Idempotent: every task reads and writes the folders of its own logical date only.
* A failed critical expectation fails its task; nothing of that date is published and the
  previously published tables stay visible to analysts.
* Logic lives in `engagement.pipeline`, whose `STEPS` give the tasks and their order (the same
  functions `engagement run --as-of D` calls); this file only wires them.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import chain, dag, task

from engagement.pipeline import STEP_NAMES


@task
def run_step(step: str) -> dict:
    """Run one pipeline step for this run's date (Spark and GX are imported only here)."""
    from airflow.sdk import get_current_context

    from core.settings import Settings
    from engagement.pipeline import run_step as run

    settings = Settings.from_env()
    context = get_current_context()
    # `ds` is rendered in UTC; the as-of date is the logical date's calendar day in the
    # reporting zone (a run for 2026-03-01 starts at 00:00 Asia/Shanghai = 16:00Z the day before).
    when = context.get("logical_date") or context["dag_run"].run_after
    as_of = pendulum.instance(when).in_timezone(settings.timezone).date()
    result = run(step, settings, as_of)
    if hasattr(result, "summary"):
        print(result.summary())
        return result.to_dict()
    return result


@dag(
    dag_id="engagement_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    tags=["engagement", "spark", "gold"],
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
)
def engagement_daily():
    chain(*(run_step.override(task_id=step)(step) for step in STEP_NAMES))


engagement_daily()
