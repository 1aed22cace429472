"""Analyst access (DuckDB over published gold), publication, and settings from the environment."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.layout import gold_build_key
from core.settings import Settings, SettingsError
from core.storage import LocalStore
from core.tables import GOLD_TABLES
from engagement.publish import PublishError, new_build, publish, stage
from engagement.query import QueryError, format_result, run_query

D1, D2 = date(2026, 3, 10), date(2026, 3, 11)


def _stage(settings: Settings, as_of: date, marker: int) -> str:
    """Stage a build of one-row parquet files, one per gold table, whose content says which date
    it is; return the build."""
    store = LocalStore(settings.warehouse)
    build = new_build()
    for table in GOLD_TABLES:
        directory = store.path(gold_build_key(table, as_of, build))
        directory.mkdir(parents=True)
        columns = {"marker": [marker], "platform": ["wechat"]}
        if table in ("group_health", "cross_platform_overlap"):
            columns["as_of_date"] = [as_of]
        pq.write_table(pa.table(columns), directory / "part-0.parquet")
    stage(store, as_of, build)
    return build


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


def test_nothing_published_gives_a_clear_error(settings):
    with pytest.raises(QueryError, match="engagement run --as-of"):
        run_query(settings.warehouse, "SELECT 1")


def test_staged_gold_is_invisible_until_published(settings):
    _stage(settings, D1, 1)
    with pytest.raises(QueryError):
        run_query(settings.warehouse, "SELECT * FROM join_conversion")
    publish(settings, D1)
    record = settings.warehouse / "published" / f"{D1.isoformat()}.json"
    assert json.loads(record.read_text())["row_counts"] == {table: 1 for table in GOLD_TABLES}
    assert run_query(settings.warehouse, "SELECT marker FROM join_conversion").rows == [(1,)]


def test_latest_run_for_history_tables_every_snapshot_for_snapshot_tables(settings):
    _stage(settings, D1, 1)
    publish(settings, D1)
    _stage(settings, D2, 2)
    publish(settings, D2)
    assert run_query(settings.warehouse, "SELECT marker FROM retention_cohorts").rows == [(2,)]
    assert run_query(settings.warehouse, "SELECT marker FROM retention_cohorts", as_of=D1).rows == [(1,)]
    snapshots = run_query(settings.warehouse, "SELECT as_of_date, marker FROM group_health ORDER BY as_of_date")
    assert snapshots.rows == [(D1, 1), (D2, 2)]


def test_publish_is_rerunnable_and_refuses_without_staged_tables(settings):
    with pytest.raises(PublishError, match="build_gold"):
        publish(settings, D1)
    _stage(settings, D1, 1)
    publish(settings, D1)
    publish(settings, D1)  # a retried task finds everything already in place
    assert run_query(settings.warehouse, "SELECT count(*) FROM daily_engagement").rows == [(1,)]


def test_bad_sql_names_the_tables(settings):
    _stage(settings, D1, 1)
    publish(settings, D1)
    with pytest.raises(QueryError, match="daily_engagement"):
        run_query(settings.warehouse, "SELECT * FROM no_such_table")


def test_formats(settings):
    _stage(settings, D1, 1)
    publish(settings, D1)
    result = run_query(settings.warehouse, "SELECT platform, marker, 0.25 AS rate, NULL AS gap FROM join_conversion")
    assert format_result(result, "csv") == "platform,marker,rate,gap\nwechat,1,0.25,"
    assert json.loads(format_result(result, "json")) == [{"platform": "wechat", "marker": 1, "rate": 0.25, "gap": None}]
    table = format_result(result, "table").splitlines()
    assert table[0].split() == ["platform", "marker", "rate", "gap"]
    assert table[2].split() == ["wechat", "1", "0.2500", "NULL"]
    assert table[-1] == "(1 row)"


def test_settings_from_environment_and_file(tmp_path):
    config = tmp_path / "engagement.env"
    config.write_text("# comment\nENGAGEMENT_TOPIC_PARTITIONS=6\nTIMEZONE=UTC\n")
    settings = Settings.from_env(
        {"ENGAGEMENT_CONFIG": str(config), "ENGAGEMENT_TOPIC_PARTITIONS": "2", "ENGAGEMENT_HOME": "/data/x", "OTHER": "1"}
    )
    assert settings.topic_partitions == 2  # the environment wins over the file
    assert settings.timezone == "UTC"
    assert settings.warehouse == Path("/data/x/warehouse")
    assert Settings.from_env({}).timezone == "Asia/Shanghai"


def test_settings_errors_name_the_variable():
    with pytest.raises(SettingsError, match="ENGAGEMENT_TIMEZONE"):
        Settings.from_env({"ENGAGEMENT_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(SettingsError, match="ENGAGEMENT_TOPIC_PARTITIONS"):
        Settings.from_env({"ENGAGEMENT_TOPIC_PARTITIONS": "many"})
    with pytest.raises(SettingsError, match="ENGAGEMENT_BOOTSTRAP_SERVERS"):
        Settings.from_env({"ENGAGEMENT_BOOTSTRAP_SERVERS": "localhost"})
    with pytest.raises(SettingsError, match="ENGAGEMENT_LOADER_WORKERS must be >= 1, got 0"):
        Settings.from_env({"ENGAGEMENT_LOADER_WORKERS": "0"})
    with pytest.raises(SettingsError, match="ENGAGEMENT_SILVER_MAX_FILES_PER_DATE must be >= 1, got 0"):
        Settings.from_env({"ENGAGEMENT_SILVER_MAX_FILES_PER_DATE": "0"})


def test_secrets_are_masked():
    settings = Settings.from_env({"ENGAGEMENT_POSTGRES_URL": "postgresql://u:hunter2@db/x"})
    assert "hunter2" not in repr(settings)
    assert settings.describe()["ENGAGEMENT_POSTGRES_URL"] == "***"
