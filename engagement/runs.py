"""``pipeline_runs``: one record per run of the daily pipeline, for operators.

A run's record is created when its first step starts, updated after every step (rows per
table, gate results) and closed as ``success`` after ``publish`` or ``failed`` with the step and
the error. ``engagement run`` and the Airflow tasks write it through the same functions; the
analysts' query engine shows it as the table ``pipeline_runs`` (columns: ``core.tables``).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from core.layout import PIPELINE_RUNS, run_key
from core.storage import Store, as_store

RUNNING, SUCCESS, FAILED = "running", "success", "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write(warehouse: Path | Store, run_id: str, record: dict[str, Any]) -> None:
    as_store(warehouse).put(run_key(run_id), json.dumps(record, indent=2, default=str).encode())


def read_run(warehouse: Path | Store, run_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(as_store(warehouse).get(run_key(run_id)))
    except FileNotFoundError:
        return None


def start_step(warehouse: Path | Store, run_id: str, as_of_date: date, triggered_by: str) -> dict[str, Any]:
    """Open the run's record (once: a retried or later step keeps its start) and mark it running."""
    record = read_run(warehouse, run_id) or {
        "run_id": run_id,
        "as_of_date": as_of_date.isoformat(),
        "triggered_by": triggered_by,
        "started_at": _now(),
        "row_counts": {},
        "gate_results": {},
    }
    record.update(status=RUNNING, ended_at=None, failed_step=None, error=None)
    _write(warehouse, run_id, record)
    return record


def finish_step(
    warehouse: Path | Store, run_id: str, step: str, output: Any, *, last: bool, seconds: float | None = None
) -> dict[str, Any]:
    """Fold one step's output (and how long it took) into the record; the last step closes it
    as a success."""
    record = read_run(warehouse, run_id)
    if record is None:
        raise RuntimeError(f"no pipeline_runs record for {run_id}: start_step was not called")
    if seconds is not None:
        record.setdefault("step_seconds", {})[step] = round(seconds, 3)
    if hasattr(output, "layer") and hasattr(output, "results"):  # a quality gate's report
        record["gate_results"][output.layer] = {
            "passed": output.passed,
            "critical_failures": sum(len(r.critical_failures) for r in output.results),
            "warnings": sum(len(r.warnings) for r in output.results),
            "data_docs": getattr(output, "data_docs", None),
        }
    elif isinstance(output, dict) and step.startswith("build_"):
        record["row_counts"].update(output)
    if last:
        record.update(status=SUCCESS, ended_at=_now())
    _write(warehouse, run_id, record)
    return record


def fail_run(warehouse: Path | Store, run_id: str, step: str, error: BaseException | str) -> dict[str, Any] | None:
    """Close the run's record as failed in ``step``; a gate's failure keeps its results."""
    record = read_run(warehouse, run_id)
    if record is None:
        return None
    report = getattr(error, "report", None)
    if report is not None:
        finish_step(warehouse, run_id, step, report, last=False)
        record = read_run(warehouse, run_id)
    message = error.one_line() if hasattr(error, "one_line") else " ".join(str(error).split())
    record.update(status=FAILED, ended_at=_now(), failed_step=step, error=message[:2000])
    _write(warehouse, run_id, record)
    return record


def list_runs(warehouse: Path | Store) -> list[dict[str, Any]]:
    """Every run's record, oldest start first."""
    store = as_store(warehouse)
    records = [json.loads(store.get(k)) for k in store.list(PIPELINE_RUNS) if k.endswith(".json")]
    return sorted(records, key=lambda r: (r["started_at"], r["run_id"]))
