"""Quality gates: real Great Expectations suites on real Spark DataFrames.

GX on Spark costs a few seconds per table, so each corrupt layer is validated once (in a
module-scoped fixture) and several tests read what that one validation reported.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, WECHAT_TOPIC
from expectations.runner import CHATTY_LOGGERS, LayerReport, QualityGateFailed, validate_layer
from expectations.suites import SUITES
from jobs.schemas import IDENTITY_MAP, SILVER_EVENTS

ROOT = Path(__file__).resolve().parents[1]
D = date(2026, 3, 1)
TS = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _schema(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(name, kind, nullable) for name, kind, nullable in fields])


S, L, I, DB, DT, B = StringType(), LongType(), IntegerType(), DoubleType(), DateType(), BooleanType()

# Bronze ------------------------------------------------------------------------------------------

_KAFKA = [
    ("kafka_topic", S, False),
    ("kafka_partition", I, False),
    ("kafka_offset", L, False),
    ("kafka_key", S, True),
    ("kafka_timestamp", TimestampType(), True),
    ("ingest_time", TimestampType(), False),
]
BRONZE_EVENTS = _schema(
    ("event_id", S, True),
    ("schema_version", L, True),
    ("event_type", S, True),
    ("platform", S, True),
    ("user_id", S, True),
    ("event_time", S, True),
    ("content_id", S, True),
    ("group_id", S, True),
    ("channel", S, True),
    ("inviter_user_id", S, True),
    ("target_platform", S, True),
    ("extra", S, True),
    *_KAFKA,
)
BRONZE_IDENTITY = _schema(
    ("link_id", S, True),
    ("kuaishou_user_id", S, True),
    ("wechat_openid", S, True),
    ("wechat_unionid", S, True),
    ("linked_at", S, True),
    ("extra", S, True),
    *_KAFKA,
)


def _bronze_events(spark, *, event_id: str | None = "e3"):
    k, w = KUAISHOU_TOPIC, WECHAT_TOPIC
    rows = [
        ("e1", 1, "like", "kuaishou", "k1", "2026-03-01T20:15:03.250+08:00", "v1", "g1", None, None, None, None, k, 0, 10, "k1", TS, TS),
        ("e2", 1, "share", "wechat", "o1", "2026-03-01T20:15:09Z", "v1", "g2", None, None, "wechat", '{"x":1}', w, 1, 11, "o1", TS, TS),
        (event_id, 1, "join", "wechat", "o2", "2026-03-01T20:16:00+08:00", None, "g2", "invite", "o1", None, None, w, 1, 12, "o2", TS, TS),
    ]
    return spark.createDataFrame(rows, BRONZE_EVENTS)


def _bronze_identity(spark):
    rows = [("l1", "k1", "o1", "u1", "2026-03-01T20:00:00+08:00", None, IDENTITY_TOPIC, 0, 1, "k1", TS, TS)]
    return spark.createDataFrame(rows, BRONZE_IDENTITY)


# Silver ------------------------------------------------------------------------------------------


def _silver_events(spark, *, duplicate: bool = False):
    rows = [
        ("e1", "like", "kuaishou", "k1", TS, D, "v1", "g1", None, None, None, "p1"),
        ("e2", "share", "wechat", "o1", TS, D, "v1", "g2", None, None, "wechat", "p1"),
        ("e3", "join", "wechat", "o2", TS, D, None, "g2", "invite", "o1", None, "p2"),
    ]
    if duplicate:
        rows.append(("e2", "like", "wechat", "o1", TS, D, "v2", None, None, None, None, "p1"))
    return spark.createDataFrame(rows, SILVER_EVENTS)


def _identity_map(spark):
    rows = [("p1", "kuaishou", "k1"), ("p1", "wechat", "o1"), ("p1", "wechat_unionid", "u1"), ("p2", "wechat", "o2")]
    return spark.createDataFrame(rows, IDENTITY_MAP)


# Gold --------------------------------------------------------------------------------------------

GOLD_SCHEMAS = {
    "daily_engagement": _schema(
        ("platform", S, False), ("event_date", DT, False), ("event_type", S, False), ("events", L, False), ("users", L, False)
    ),
    "join_conversion": _schema(
        ("platform", S, False),
        ("cohort_date", DT, False),
        ("funnel", S, False),
        ("attempts", L, False),
        ("conversions", L, False),
        ("conversion_rate", DB, True),
    ),
    "retention_cohorts": _schema(
        ("platform", S, False),
        ("cohort_date", DT, False),
        ("day_offset", I, False),
        ("cohort_users", L, False),
        ("retained_users", L, False),
        ("retention_rate", DB, True),
    ),
    "member_lifetime": _schema(
        ("platform", S, False),
        ("cohort_month", DT, False),
        ("users", L, False),
        ("avg_lifetime_days", DB, True),
        ("median_lifetime_days", DB, True),
    ),
    "group_health": _schema(
        ("platform", S, False),
        ("group_id", S, False),
        ("as_of_date", DT, False),
        ("origin_channel", S, True),
        ("first_event_date", DT, False),
        ("last_event_date", DT, False),
        ("members", L, False),
        ("active_members_7d", L, False),
        ("silent_members_7d", L, False),
        ("inactive_members_14d", L, False),
        ("alive_30d", B, True),
    ),
    "group_survival": _schema(
        ("platform", S, False),
        ("origin_channel", S, True),
        ("cohort_month", DT, False),
        ("groups", L, False),
        ("survived_30d", L, False),
        ("survival_rate_30d", DB, True),
    ),
    "cross_platform_propagation": _schema(
        ("event_date", DT, False),
        ("likes", L, False),
        ("propagated", L, False),
        ("propagation_rate", DB, True),
        ("latency_p50_s", DB, True),
        ("latency_p90_s", DB, True),
        ("latency_p99_s", DB, True),
    ),
    "cross_platform_overlap": _schema(
        ("as_of_date", DT, False),
        ("kuaishou_members", L, False),
        ("wechat_members", L, False),
        ("both", L, False),
        ("overlap_rate", DB, True),
    ),
}

M = date(2026, 2, 1)  # a cohort month
GOOD_GOLD_ROWS = {
    "daily_engagement": [("kuaishou", D, "like", 5, 3), ("wechat", D, "join", 2, 2)],
    "join_conversion": [
        ("wechat", D, "invite", 4, 1, 0.25),
        ("kuaishou", D, "content", 0, 0, None),  # no attempts: rate is NULL
    ],
    "retention_cohorts": [("wechat", D, 1, 4, 3, 0.75), ("wechat", D, 30, 4, 0, 0.0)],
    "member_lifetime": [("wechat", M, 3, 120.5, 136.0), ("kuaishou", M, 2, 30.0, 30.0)],
    "group_health": [
        ("wechat", "g2", D, "invite", date(2026, 1, 1), D, 5, 3, 2, 1, True),
        ("wechat", "g3", D, None, D, D, 0, 0, 0, 0, None),  # nobody joined yet
    ],
    "group_survival": [("wechat", "invite", M, 4, 3, 0.75), ("wechat", None, M, 1, 0, 0.0)],
    "cross_platform_propagation": [(D, 10, 4, 0.4, 3.5, 60.0, 3600.0), (date(2026, 3, 2), 3, 0, 0.0, None, None, None)],
    "cross_platform_overlap": [(D, 10, 8, 3, 0.2)],
}


def _gold(spark, table: str, rows=None, schema: StructType | None = None):
    return spark.createDataFrame(GOOD_GOLD_ROWS[table] if rows is None else rows, schema or GOLD_SCHEMAS[table])


# Suites ------------------------------------------------------------------------------------------


def test_importing_the_gate_does_not_import_great_expectations_or_spark():
    code = (
        "import sys, expectations.runner, expectations.suites;"
        "heavy = [m for m in ('great_expectations', 'pyspark') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_great_expectations_imported_by_the_gate_keeps_its_developer_chatter_out_of_the_log():
    code = (
        "import logging, sys, expectations.runner as runner;"
        "records = []; handler = logging.Handler(); handler.emit = records.append;"
        "logging.basicConfig(level=logging.INFO, handlers=[handler]);"
        "runner._get_context();"
        "info = [r.name for r in records if r.name.startswith('great_expectations') and r.levelno < logging.WARNING];"
        "print(sorted(set(info)), sum(name in runner.CHATTY_LOGGERS for name in info))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    names, chatter = done.stdout.strip().rsplit(" ", 1)
    assert "great_expectations.data_context.types.base" in names  # INFO reached the handler
    assert chatter == "0", done.stdout


def test_a_gate_logs_its_verdict_without_great_expectations_chatter(spark, caplog):
    caplog.set_level(logging.INFO)
    validate_layer("gold", {"join_conversion": _gold(spark, "join_conversion")})
    chatter = [r.name for r in caplog.records if r.name in CHATTY_LOGGERS and r.levelno < logging.WARNING]
    assert not chatter, f"{len(chatter)} lines from {sorted(set(chatter))}"
    assert any(r.name == "expectations.runner" and "PASSED" in r.getMessage() for r in caplog.records)


def test_every_suite_builds_without_a_context_and_marks_every_expectation():
    for (layer, table), factory in SUITES.items():
        suite = factory()
        assert suite.name == f"{layer}_{table}"
        assert suite.expectations, (layer, table)
        configurations = [json.dumps(e.configuration.to_json_dict(), sort_keys=True) for e in suite.expectations]
        assert len(set(configurations)) == len(configurations), f"duplicate expectation in {table}"
        for expectation in suite.expectations:
            assert expectation.meta["severity"] in ("critical", "warning"), expectation
            assert expectation.severity.value == expectation.meta["severity"]


def test_gold_suites_check_exactly_the_design_columns_and_types():
    # GOLD_SCHEMAS above is written out by hand from DESIGN section 5.
    assert {table for layer, table in SUITES if layer == "gold"} == set(GOLD_SCHEMAS)
    for table, schema in GOLD_SCHEMAS.items():
        expectations = SUITES[("gold", table)]().expectations
        column_sets = [e for e in expectations if e.expectation_type == "expect_table_columns_to_match_set"]
        assert [(sorted(e.column_set), e.exact_match) for e in column_sets] == [(sorted(schema.fieldNames()), True)]
        types = {e.column: e.type_ for e in expectations if e.expectation_type == "expect_column_values_to_be_of_type"}
        assert types == {f.name: type(f.dataType).__name__ for f in schema.fields}, table


def test_unknown_layer_or_table_is_refused_before_any_validation(spark):
    with pytest.raises(ValueError, match="unknown layer"):
        validate_layer("platinum", {})
    with pytest.raises(ValueError, match="no suite for gold table"):
        validate_layer("gold", {"daily_engagment": _gold(spark, "daily_engagement")})


def test_severity_comes_from_meta_then_from_the_gx_field():
    from types import SimpleNamespace

    from expectations.runner import _severity_of

    assert _severity_of(SimpleNamespace(meta={"severity": "warning"}, severity="critical")) == "warning"
    assert _severity_of(SimpleNamespace(meta=None, severity=SimpleNamespace(value="warning"))) == "warning"
    assert _severity_of(SimpleNamespace(meta={}, severity=None)) == "critical"
    assert _severity_of(SimpleNamespace(meta={"severity": "sometimes"})) == "critical"


# Good data passes ----------------------------------------------------------------------------------


def test_good_bronze_passes(spark):
    events = _bronze_events(spark)
    report = validate_layer("bronze", {"events": events, "identity": _bronze_identity(spark)})
    assert report.passed, report.summary()
    assert [r.table for r in report.results] == ["events", "identity"]
    assert all(r.evaluated > 5 and not r.warnings for r in report.results), report.summary()
    assert not events.is_cached  # GX persisted the batch; the runner released it


def test_a_table_of_small_sources_is_validated_as_one_partition(spark, tmp_path, monkeypatch):
    from expectations import runner

    _bronze_events(spark).repartition(3).write.parquet(str(tmp_path / "events"))
    events = spark.read.schema(BRONZE_EVENTS).parquet(str(tmp_path / "events"))
    assert runner.as_validated(events).rdd.getNumPartitions() == 1
    # Without cost-based optimisation Spark estimates a join as the product of its sides, far
    # above the bound here; the sizes of its sources are what count.
    joined = spark.range(100_000).repartition(3).join(spark.range(100_000), "id")
    assert int(str(joined._jdf.queryExecution().optimizedPlan().stats().sizeInBytes())) > runner.ONE_PARTITION_AT_MOST
    assert runner.as_validated(joined).rdd.getNumPartitions() == 1

    # The gate judges the one partition as it judges the files, and releases what GX persisted.
    cached_before = spark.sparkContext._jsc.getPersistentRDDs().size()
    report = validate_layer("bronze", {"events": events}, raise_on_failure=False)
    assert report.passed and report.results[0].evaluated > 5, report.summary()
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == cached_before
    _bronze_events(spark, event_id=None).repartition(3).write.parquet(str(tmp_path / "broken"))
    broken = spark.read.schema(BRONZE_EVENTS).parquet(str(tmp_path / "broken"))
    assert runner.as_validated(broken).rdd.getNumPartitions() == 1
    with pytest.raises(QualityGateFailed) as caught:
        validate_layer("bronze", {"events": broken})
    assert "expect_column_values_to_not_be_null(event_id)" in _failures(caught.value, "events")[0]

    monkeypatch.setattr(runner, "ONE_PARTITION_AT_MOST", 0)
    assert runner.as_validated(events).rdd.getNumPartitions() == events.rdd.getNumPartitions() > 1


def test_good_silver_passes(spark):
    report = validate_layer("silver", {"events": _silver_events(spark), "identity_map": _identity_map(spark)})
    assert report.passed, report.summary()
    assert all(not r.critical_failures and not r.warnings for r in report.results), report.summary()


def test_all_eight_gold_tables_pass(spark):
    tables = {table: _gold(spark, table) for table in GOLD_SCHEMAS}
    started = time.monotonic()
    report = validate_layer("gold", tables)
    elapsed = time.monotonic() - started
    print(f"\nvalidated 8 gold tables in {elapsed:.1f}s\n{report.summary()}")
    assert report.passed, report.summary()
    assert sorted(r.table for r in report.results) == sorted(GOLD_SCHEMAS)
    assert all(not r.warnings for r in report.results), report.summary()
    assert "PASSED" in report.summary()


def test_tables_validated_at_once_are_each_judged_on_their_own_rows(spark):
    """A gate validates several tables at once, and GX's SQL checks register their batch under one
    view name per Spark session: one table's broken month must fail that table and no other."""
    tables = {table: _gold(spark, table) for table in GOLD_SCHEMAS}
    tables["member_lifetime"] = _gold(spark, "member_lifetime", [("wechat", date(2026, 2, 15), 3, 120.5, 136.0)])
    report = validate_layer("gold", tables, raise_on_failure=False)
    assert [r.table for r in report.results] == list(tables)  # in the order given
    assert report.failed_tables == ["member_lifetime"], report.summary()
    [message] = report.results[list(tables).index("member_lifetime")].critical_failures
    assert "cohort_month is the first day of a month" in message and "1 offending rows" in message, message


def test_every_check_that_queries_the_batch_by_sql_runs_one_table_at_a_time():
    from expectations.runner import _SESSION_VIEW_CHECKS

    for (layer, table), suite in SUITES.items():
        for expectation in suite().expectations:
            metrics = getattr(type(expectation), "metric_dependencies", ())
            if any("query" in metric for metric in metrics):
                assert expectation.expectation_type in _SESSION_VIEW_CHECKS, (layer, table, expectation.expectation_type)


# Corrupt data fails and names the problem --------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupt_gold(spark) -> QualityGateFailed:
    """One validation of two corrupt gold tables; the tests below read its report."""
    join_conversion = _gold(
        spark,
        "join_conversion",
        [
            ("wechat", D, "invite", 2, 1, 1.5),  # a rate above 1
            ("wechat", date(2026, 3, 2), "invite", 1, 3, 0.3),  # conversions > attempts
            ("douyin", D, "content", 4, 1, 0.25),  # an unknown platform
        ],
    )
    without_users = _gold(spark, "daily_engagement").drop("users")  # a missing column
    with pytest.raises(QualityGateFailed) as caught:
        validate_layer("gold", {"join_conversion": join_conversion, "daily_engagement": without_users})
    return caught.value


def _failures(error: QualityGateFailed, table: str) -> list[str]:
    return next(r for r in error.report.results if r.table == table).critical_failures


def test_rate_above_one_fails_the_gate(corrupt_gold):
    assert any(
        "expect_column_values_to_be_between(conversion_rate" in m and "1.5" in m
        for m in _failures(corrupt_gold, "join_conversion")
    ), _failures(corrupt_gold, "join_conversion")
    assert "conversion_rate" in str(corrupt_gold)
    assert "not published" in str(corrupt_gold)


def test_conversions_above_attempts_fail_the_gate(corrupt_gold):
    [message] = [m for m in _failures(corrupt_gold, "join_conversion") if "pair_values_a_to_be_greater_than_b" in m]
    assert "attempts, conversions" in message and "1 unexpected of 3 rows" in message and "(1, 3)" in message


def test_unknown_platform_fails_the_gate(corrupt_gold):
    [message] = [m for m in _failures(corrupt_gold, "join_conversion") if "to_be_in_set(platform" in m]
    assert "douyin" in message


def test_missing_column_fails_the_gate(corrupt_gold):
    failures = _failures(corrupt_gold, "daily_engagement")
    assert any("expect_table_columns_to_match_set" in m and "missing columns users" in m for m in failures), failures
    # Checks on the missing column report that they could not run, not that the data was bad.
    assert failures[0].startswith("expect_table_columns_to_match_set"), failures  # the cause first
    assert any(m.endswith("could not be evaluated: column(s) users missing") for m in failures), failures


def test_failed_report_summarises_and_serialises(corrupt_gold):
    report = corrupt_gold.report
    assert not report.passed
    assert sorted(report.failed_tables) == ["daily_engagement", "join_conversion"]
    summary = report.summary()
    assert summary.splitlines()[0].startswith("Quality gate for layer 'gold': FAILED")
    assert "[FAIL] join_conversion" in summary and "The gold layer was not published." in summary
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["passed"] is False and {r["table"] for r in as_json["results"]} == {"join_conversion", "daily_engagement"}


def test_null_event_id_in_bronze_fails_the_gate(spark):
    with pytest.raises(QualityGateFailed) as caught:
        validate_layer("bronze", {"events": _bronze_events(spark, event_id=None)})
    [message] = _failures(caught.value, "events")
    assert message.startswith("expect_column_values_to_not_be_null(event_id)")
    assert "1 unexpected of 3 rows" in message


def test_duplicate_event_id_in_silver_fails_the_gate(spark):
    with pytest.raises(QualityGateFailed) as caught:
        validate_layer("silver", {"events": _silver_events(spark, duplicate=True)})
    [message] = _failures(caught.value, "events")
    assert message.startswith("expect_column_values_to_be_unique(event_id)") and "e2" in message


# Warnings are reported, not enforced ----------------------------------------------------------------


def test_warning_only_violation_passes_the_gate_and_is_reported(spark):
    # A large WeChat invitation cohort converting at 90 %: implausible, but not impossible.
    rows = [("wechat", D, "invite", 200, 180, 0.9)]
    report = validate_layer("gold", {"join_conversion": _gold(spark, "join_conversion", rows)})
    assert report.passed, report.summary()
    [result] = report.results
    assert result.success and not result.critical_failures
    assert any("conversion_rate" in w and "WeChat invitation" in w for w in result.warnings), result.warnings
    assert "[warn] join_conversion" in report.summary()


def test_raise_on_failure_false_returns_the_failed_report(spark):
    rows = [(D, 10, 8, 9, 0.2)]  # both > wechat_members
    report = validate_layer(
        "gold", {"cross_platform_overlap": _gold(spark, "cross_platform_overlap", rows)}, raise_on_failure=False
    )
    assert isinstance(report, LayerReport) and not report.passed
    assert any("wechat_members, both" in m for m in report.results[0].critical_failures), report.summary()
