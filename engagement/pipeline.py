"""The daily pipeline for one logical date, in :data:`STEPS` order:

    validate_bronze -> build_silver -> validate_silver -> build_gold -> validate_gold -> publish

Each step reads its inputs from storage and writes its outputs there, so Airflow runs the steps
as separate tasks (``dags/engagement_daily.py``) and ``engagement run`` runs them in a row
(:func:`run_daily`); both take the order and the functions from :data:`STEPS`, and nothing
else writes it down.

This module combines the parts: Spark jobs (``jobs``), quality gates (``expectations``) and
publication (``engagement.publish``). Storage layout: ``core.layout``; a run only ever replaces
its own date, so re-runs are idempotent.

A run is incremental (``engagement.incremental``, DESIGN section 7): it validates and adds to
silver only the bronze committed since the last run, adding it to the ``event_date`` folders it
touches, and recomputes only the gold rows those changes can reach, carrying the
rest forward from the newest earlier publication. ``full_refresh`` rebuilds silver from all of
bronze and gold whole, and gives the same rows.

On a cluster: ``spark-submit engagement/pipeline.py --as-of YYYY-MM-DD`` runs every step, and
``--step NAME`` one of them (what the DAG submits when a cluster is configured).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from core import silver_log
from core.layout import gold_build_key
from core.settings import Settings
from core.storage import warehouse_store
from core.tables import GOLD_TABLES
from engagement import progress

log = logging.getLogger("engagement.pipeline")


# --------------------------------------------------------------------------------------------
# Steps: each takes (spark, settings, as_of_date) and returns what it produced
# --------------------------------------------------------------------------------------------
def _data_docs(settings: Settings, as_of_date: date) -> dict[str, Any]:
    """Where a gate writes its Great Expectations Data Docs: ``$ENGAGEMENT_HOME/data_docs``
    (on the machine that runs the gate), one run per layer and date."""
    return {"data_docs": settings.home / "data_docs", "run_name": as_of_date.isoformat()}


def validate_bronze(spark, settings: Settings, as_of_date: date, *, full_refresh: bool = False):
    """The bronze gate, on what this run adds to silver: the ranges committed since the last
    run (all of bronze with ``full_refresh``). Fixes those ranges for build_silver."""
    from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY
    from engagement.incremental import new_bronze, plan_bronze
    from expectations.runner import validate_layer
    from jobs.storage import read_bronze_files

    store = warehouse_store(settings)
    plan = plan_bronze(store, as_of_date, full_refresh=full_refresh)
    files = new_bronze(store, plan, silver_log.head(store))
    tables = {
        "events": read_bronze_files(spark, store, BRONZE_EVENTS, files[BRONZE_EVENTS]),
        "identity": read_bronze_files(spark, store, BRONZE_IDENTITY, files[BRONZE_IDENTITY]),
    }
    return validate_layer("bronze", tables, **_data_docs(settings, as_of_date))


def build_silver(spark, settings: Settings, as_of_date: date) -> dict[str, int]:
    """Silver's next version: the validated new bronze added; returns rows per table."""
    from engagement.incremental import update_silver
    from jobs.storage import parquet_rows

    store = warehouse_store(settings)
    version = update_silver(spark, store, settings, as_of_date)
    return {"events": version.rows(), "identity_map": parquet_rows(store, version.identity_map)}


def validate_silver(spark, settings: Settings, as_of_date: date):
    """The silver gate, on the dates changed since the last version it passed (this run's own
    when the last run passed; the newest date when none changed) and the whole identity map.
    A pass is recorded, so a failed version is checked again by the next run's gate."""
    from engagement.incremental import silver_version_of_run
    from expectations.runner import validate_layer
    from jobs.schemas import IDENTITY_MAP
    from jobs.silver import STORED_SCHEMA, with_person
    from jobs.storage import read_with_schema

    store = warehouse_store(settings)
    version = silver_version_of_run(store, as_of_date)
    dates = sorted(silver_log.unvalidated_changes(store, version).dates) or version.event_dates[-1:]
    identity_map = read_with_schema(spark, store, version.identity_map, IDENTITY_MAP)
    events = with_person(read_with_schema(spark, store, version.event_files(dates), STORED_SCHEMA), identity_map)
    report = validate_layer("silver", {"events": events, "identity_map": identity_map}, **_data_docs(settings, as_of_date))
    silver_log.mark_validated(store, version.number)  # validate_layer raised if it failed
    return report


def build_gold(spark, settings: Settings, as_of_date: date) -> dict[str, int]:
    """All eight gold tables, as a new build staged for the gold gate; returns rows per table.

    Incremental from the newest earlier publication when there is one (``engagement.incremental``).
    """
    from engagement.incremental import build_gold_tables, silver_version_of_run
    from engagement.publish import new_build, stage
    from jobs.storage import write_table

    store = warehouse_store(settings)
    version = silver_version_of_run(store, as_of_date)
    tables, how = build_gold_tables(spark, store, version, as_of_date)
    build = new_build()
    seconds = {}
    for i, (name, df) in enumerate(tables.items()):
        progress.table_started("build_gold", name, i, len(tables))
        started = time.monotonic()
        write_table(df.coalesce(1), store, gold_build_key(name, as_of_date, build))
        seconds[name] = round(time.monotonic() - started, 3)
    spark.catalog.clearCache()
    log.info("%s: gold built (%s)", as_of_date, how)
    return stage(store, as_of_date, build, timezone=version.timezone, table_seconds=seconds, **how)["row_counts"]


def validate_gold(spark, settings: Settings, as_of_date: date):
    """The gold gate, on the staged build: nothing is visible to analysts yet."""
    from engagement.publish import staged
    from expectations.runner import validate_layer
    from jobs.storage import read_files

    store = warehouse_store(settings)
    files = staged(store, as_of_date)["tables"]
    return validate_layer(
        "gold", {name: read_files(spark, store, files[name]) for name in GOLD_TABLES}, **_data_docs(settings, as_of_date)
    )


def publish(spark, settings: Settings, as_of_date: date) -> dict[str, Any]:
    """Make the validated gold of ``as_of_date`` visible to analysts (see ``engagement.publish``)."""
    from engagement.publish import publish as publish_gold

    record = publish_gold(settings, as_of_date)
    return {"published": as_of_date.isoformat(), "row_counts": record["row_counts"]}


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[..., Any]
    # publish moves files and writes records only: no Spark session needed.
    needs_spark: bool = True
    # The first step decides between an incremental run and a full refresh; the others follow it.
    takes_full_refresh: bool = False


# The order of the daily run, written once: run_daily, the DAG and the CLI read it.
STEPS: tuple[Step, ...] = (
    Step("validate_bronze", validate_bronze, takes_full_refresh=True),
    Step("build_silver", build_silver),
    Step("validate_silver", validate_silver),
    Step("build_gold", build_gold),
    Step("validate_gold", validate_gold),
    Step("publish", publish, needs_spark=False),
)
STEP_NAMES = tuple(step.name for step in STEPS)
GATES = {"bronze": validate_bronze, "silver": validate_silver, "gold": validate_gold}


def step_named(name: str) -> Step:
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"no pipeline step {name!r}; the steps are {', '.join(STEP_NAMES)}")


def run_step(
    name: str,
    settings: Settings,
    as_of_date: date,
    *,
    run_id: str,
    triggered_by: str,
    spark=None,
    full_refresh: bool = False,
) -> Any:
    """Run one step for ``as_of_date`` and record it in ``pipeline_runs`` under ``run_id``;
    Spark is started only if the step needs it. ``full_refresh`` is for the first step."""
    from engagement import runs

    step = step_named(name)
    progress.step_started(name)
    runs.start_step(warehouse_store(settings), run_id, as_of_date, triggered_by)
    started = time.monotonic()
    try:
        if step.needs_spark and spark is None:
            spark = spark_for(settings, app_name=f"engagement_daily.{name}")
        options = {"full_refresh": full_refresh} if step.takes_full_refresh else {}
        output = step.run(spark, settings, as_of_date, **options)
    except Exception as exc:
        runs.fail_run(warehouse_store(settings), run_id, name, exc)
        raise
    runs.finish_step(
        warehouse_store(settings), run_id, name, output, last=name == STEP_NAMES[-1], seconds=time.monotonic() - started
    )
    return output


@dataclass
class RunResult:
    as_of_date: date
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def silver_counts(self) -> dict[str, int]:
        return self.outputs["build_silver"]

    @property
    def gold_counts(self) -> dict[str, int]:
        return self.outputs["build_gold"]


def run_daily(
    spark,
    settings: Settings,
    as_of_date: date,
    *,
    on_step: Callable[[str], None] | None = None,
    run_id: str | None = None,
    triggered_by: str = "cli",
    full_refresh: bool = False,
) -> RunResult:
    """Run every step for one logical date, in order; a failed gate raises before publish.

    The run is recorded in ``pipeline_runs`` (by default as ``cli__<date>__<start time>``).
    """
    run_id = run_id or f"{triggered_by}__{as_of_date.isoformat()}__{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"
    result = RunResult(as_of_date)
    for step in STEPS:
        log.info("%s: %s", as_of_date, step.name)
        if on_step:
            on_step(step.name)
        result.outputs[step.name] = run_step(
            step.name, settings, as_of_date, run_id=run_id, triggered_by=triggered_by, spark=spark,
            full_refresh=full_refresh,
        )
    return result


def _import_in_background(load: Callable[[], Any]) -> None:
    """Run ``load`` (an import) on a daemon thread: the gates' Great Expectations costs about 10 s
    of Python, which runs while the JVM starts (another process) instead of after it. A later
    ``import`` waits for this one to finish; a failure here surfaces there."""
    import threading

    def run() -> None:
        try:
            load()
        except Exception:  # noqa: BLE001 - the gate's own import reports it
            pass

    threading.Thread(target=run, name=f"background {load.__name__}", daemon=True).start()


def spark_for(settings: Settings, app_name: str = "engagement"):
    """The Spark session for these settings (local mode unless spark-submit says otherwise)."""
    from expectations.runner import import_great_expectations
    from jobs.object_storage import s3a_conf
    from jobs.session import build_spark

    _import_in_background(import_great_expectations)
    return build_spark(
        app_name=app_name,
        master=settings.spark_master,
        shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory,
        conf=s3a_conf(settings.s3_endpoint, settings.s3_region) if settings.warehouse_on_object_storage else None,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``spark-submit engagement/pipeline.py --as-of YYYY-MM-DD [--step NAME]``:
    every step in order, or the one named (what an Airflow task submits to a cluster)."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the daily pipeline (or one step) for one logical date.")
    parser.add_argument("--as-of", required=True, type=date.fromisoformat)
    parser.add_argument("--step", choices=STEP_NAMES, help="only this step (default: all, in order)")
    parser.add_argument("--run-id", help="the pipeline_runs record to write (default: a new one)")
    parser.add_argument("--triggered-by", default="spark-submit")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild silver from all of bronze and gold whole")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = spark_for(settings) if not args.step or step_named(args.step).needs_spark else None
    if args.step:
        run_id = args.run_id or f"{args.triggered_by}__{args.as_of.isoformat()}"
        run_step(
            args.step, settings, args.as_of, run_id=run_id, triggered_by=args.triggered_by, spark=spark,
            full_refresh=args.full_refresh,
        )
    else:
        run_daily(
            spark, settings, args.as_of, run_id=args.run_id, triggered_by=args.triggered_by, full_refresh=args.full_refresh
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
