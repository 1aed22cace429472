"""Headline numbers from the published gold tables, beside the rates the generator was given."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core.storage import Store
from engagement.query import QueryResult, format_result, run_query

HEADLINE_CONVERSION = """
SELECT platform, funnel, SUM(attempts) AS attempts, SUM(conversions) AS conversions,
       SUM(conversions) / NULLIF(SUM(attempts), 0) AS conversion_rate
FROM join_conversion GROUP BY platform, funnel ORDER BY platform, funnel
"""
HEADLINE_RETENTION = """
SELECT platform, day_offset, SUM(cohort_users) AS cohort_users, SUM(retained_users) AS retained_users,
       SUM(retained_users) / NULLIF(SUM(cohort_users), 0) AS retention_rate
FROM retention_cohorts WHERE day_offset IN (1, 7, 30) GROUP BY platform, day_offset ORDER BY platform, day_offset
"""


def _with_expected(result: QueryResult, key_columns: int, expected: dict[tuple, float] | None) -> QueryResult:
    if not expected:
        return result
    rows = [row + (expected.get(tuple(row[:key_columns])),) for row in result.rows]
    return QueryResult(result.columns + ["generator_rate"], rows)


def headline(
    warehouse: Path | Store,
    *,
    as_of: date | None = None,
    expected: dict | None = None,
) -> tuple[QueryResult, QueryResult]:
    """Join conversion per platform and funnel, and day-1/7/30 retention per platform.

    ``expected`` (from the generator) maps ("conversion", platform, funnel) and
    ("retention", platform, day) to the rate the traffic was generated with.
    """
    expected = expected or {}
    conversion = run_query(warehouse, HEADLINE_CONVERSION, as_of=as_of)
    retention = run_query(warehouse, HEADLINE_RETENTION, as_of=as_of)
    conv_expected = {k[1:]: v for k, v in expected.items() if k[0] == "conversion"}
    ret_expected = {k[1:]: v for k, v in expected.items() if k[0] == "retention"}
    return _with_expected(conversion, 2, conv_expected), _with_expected(retention, 2, ret_expected)


def render_headline(conversion: QueryResult, retention: QueryResult, fmt: str = "table") -> str:
    if fmt == "table":
        return "Join conversion (all published cohorts)\n" + format_result(conversion) + "\n\nRetention\n" + format_result(retention)
    return format_result(conversion, fmt) + "\n" + format_result(retention, fmt)
