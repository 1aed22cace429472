"""Each gold table's columns are written once, in core.tables: a change there reaches the
builders, the quality suites and the PostgreSQL mirror alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from pyspark.errors import AnalysisException
from silver_rows import silver_events

from core import tables
from engagement.postgres import create_table_sql
from expectations.suites import SUITES
from jobs.gold_engagement import build_join_conversion


@pytest.fixture()
def attempts_renamed(monkeypatch):
    """join_conversion with its ``attempts`` column renamed to ``tries``, everywhere it is read."""
    renamed = replace(
        tables.JOIN_CONVERSION,
        columns=tuple(replace(c, name="tries") if c.name == "attempts" else c for c in tables.JOIN_CONVERSION.columns),
    )
    monkeypatch.setattr(tables, "JOIN_CONVERSION", renamed)
    monkeypatch.setitem(tables.GOLD, "join_conversion", renamed)
    return renamed


def test_builder_output_follows_the_definition(spark, attempts_renamed):
    events = silver_events(spark, [])
    with pytest.raises(AnalysisException, match="tries"):
        build_join_conversion(events, as_of_date=date(2026, 3, 10)).columns


def test_suite_follows_the_definition(attempts_renamed):
    expectations = SUITES[("gold", "join_conversion")]().expectations
    (column_set,) = [e for e in expectations if e.expectation_type == "expect_table_columns_to_match_set"]
    assert sorted(column_set.column_set) == sorted(
        ["platform", "cohort_date", "funnel", "tries", "conversions", "conversion_rate"]
    )


def test_postgres_ddl_follows_the_definition(attempts_renamed):
    ddl = create_table_sql(tables.GOLD["join_conversion"]).as_string(None)
    assert ddl == (
        'CREATE TABLE "gold"."join_conversion" ("platform" text NOT NULL, "cohort_date" date NOT NULL, '
        '"funnel" text NOT NULL, "tries" bigint NOT NULL, "conversions" bigint NOT NULL, '
        '"conversion_rate" double precision)'
    )
