"""The data dictionary: `engagement tables` and docs/tables.md, from the one schema source.

The gold columns expected here are copied from DESIGN section 5 by hand, not read from
``core.tables``: the dictionary must show what the contract promises analysts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engagement import dictionary

REPO = Path(__file__).resolve().parent.parent

DESIGN_GOLD_COLUMNS = {
    "daily_engagement": ["platform", "event_date", "event_type", "events", "users"],
    "join_conversion": ["platform", "cohort_date", "funnel", "attempts", "conversions", "conversion_rate"],
    "retention_cohorts": ["platform", "cohort_date", "day_offset", "cohort_users", "retained_users", "retention_rate"],
    "member_lifetime": ["platform", "cohort_month", "users", "avg_lifetime_days", "median_lifetime_days"],
    "group_health": [
        "platform", "group_id", "as_of_date", "origin_channel", "first_event_date", "last_event_date", "members",
        "active_members_7d", "silent_members_7d", "inactive_members_14d", "alive_30d",
    ],  # fmt: skip
    "group_survival": ["platform", "origin_channel", "cohort_month", "groups", "survived_30d", "survival_rate_30d"],
    "cross_platform_propagation": [
        "event_date", "likes", "propagated", "propagation_rate", "latency_p50_s", "latency_p90_s", "latency_p99_s",
    ],  # fmt: skip
    "cross_platform_overlap": ["as_of_date", "kuaishou_members", "wechat_members", "both", "overlap_rate"],
}


def tables_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    return subprocess.run(
        [sys.executable, "-m", "engagement.cli", "tables", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_docs_tables_md_is_generated_from_the_schema_and_up_to_date() -> None:
    committed = (REPO / "docs" / "tables.md").read_text()
    assert committed == dictionary.render_markdown(), (
        "docs/tables.md is stale: core/tables.py changed since it was generated; run `make docs` and commit it"
    )


def test_every_gold_table_lists_the_columns_design_promises_with_a_meaning() -> None:
    done = tables_cli("--format", "json")
    assert done.returncode == 0, done.stderr
    described = {entry["table"]: entry for entry in json.loads(done.stdout)}
    for table, columns in DESIGN_GOLD_COLUMNS.items():
        entry = described[f"gold.{table}"]
        assert [c["name"] for c in entry["columns"]] == columns, table
        assert entry["meaning"] and entry["key"], table
        assert all(c["meaning"] and c["type"] for c in entry["columns"]), table
    # Silver, bronze, quarantine and the runs table are there too.
    for name in ("bronze.events", "bronze.identity", "quarantine", "silver.events", "silver.identity_map"):
        assert name in described
    assert "ops.pipeline_runs" in described
    silver_events = [c["name"] for c in described["silver.events"]["columns"]]
    assert {"event_date", "person_id"} <= set(silver_events)


def test_one_table_in_text_shows_types_keys_and_nullable_columns() -> None:
    done = tables_cli("join_conversion")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gold.join_conversion: ")
    assert lines[1] == "  key: platform, cohort_date, funnel"
    rate = next(line for line in lines if line.split()[:1] == ["conversion_rate"])
    assert rate.split()[1:3] == ["double", "null"]
    cohort = next(line for line in lines if line.split()[:1] == ["cohort_date"])
    assert cohort.split()[1:3] == ["date", "key"]


def test_a_bare_name_shows_every_layer_that_has_it_and_an_unknown_one_lists_the_tables() -> None:
    done = tables_cli("events")
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")] == [
        "bronze.events",
        "silver.events",
    ]
    done = tables_cli("daily_engagment")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "no table 'daily_engagment'" in done.stderr and "gold.daily_engagement" in done.stderr


@pytest.mark.parametrize("args", [("--help",), ("tables", "--help")])
def test_help_shows_examples(args: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "engagement.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    if args[0] == "tables":
        assert "examples:" in done.stdout and "engagement tables join_conversion" in done.stdout
    else:
        assert "tables" in done.stdout
