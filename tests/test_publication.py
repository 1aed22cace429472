"""Publication by manifest, on a local folder and on a real S3-compatible server.

A date's gold is visible exactly when its manifest names it: all eight tables or none, a re-run
replaces the whole date at once, nothing is moved or copied, and pruning removes what no kept
manifest names.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import silver_log
from core.layout import gold_build_key, published_dates
from core.settings import Settings
from core.storage import LocalStore, Store
from core.tables import GOLD_TABLES
from engagement.publish import PublishError, new_build, prune, publish, stage
from engagement.query import QueryError, run_query

D1, D2, D3, D4 = date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12), date(2026, 3, 13)


@pytest.fixture(params=["local", "s3"])
def settings(request, tmp_path) -> Settings:
    if request.param == "local":
        return Settings(home=tmp_path)
    server = request.getfixturevalue("object_store")
    return Settings(home=tmp_path, warehouse_uri=f"s3://engagement/{uuid.uuid4().hex}", s3_endpoint=server.endpoint)


def _store(settings: Settings) -> Store:
    from core.storage import warehouse_store

    return warehouse_store(settings)


def _build(settings: Settings, as_of: date, marker: int, *, tables=GOLD_TABLES) -> str:
    """Write a build of one-row files (``marker`` says which build it is), as build_gold would."""
    store = _store(settings)
    build = new_build()
    for table in tables:
        columns = {"marker": [marker], "platform": ["wechat"]}
        if table in ("group_health", "cross_platform_overlap"):
            columns["as_of_date"] = [as_of]
        sink = io.BytesIO()
        pq.write_table(pa.table(columns), sink)
        store.put(f"{gold_build_key(table, as_of, build)}/part-00000.parquet", sink.getvalue())
    return build


def _markers(settings: Settings, table: str = "join_conversion", as_of: date | None = None) -> list[int]:
    return [r[0] for r in run_query(_store(settings), f"SELECT marker FROM {table} ORDER BY ALL", as_of=as_of).rows]


def test_a_date_is_visible_only_once_its_manifest_is_written(settings):
    store = _store(settings)
    with pytest.raises(QueryError, match="no gold tables are published"):
        run_query(store, "SELECT 1")
    with pytest.raises(PublishError, match="build_gold"):
        publish(settings, D1)
    stage(store, D1, _build(settings, D1, 1))
    with pytest.raises(QueryError):  # staged, validated or not: still invisible
        run_query(store, "SELECT * FROM join_conversion")
    record = publish(settings, D1)
    assert record["row_counts"] == {table: 1 for table in GOLD_TABLES}
    assert published_dates(store) == [D1]
    assert _markers(settings) == [1]
    publish(settings, D1)  # a retried task publishes the same build again
    assert _markers(settings) == [1]


def test_a_build_missing_a_table_cannot_be_staged(settings):
    build = _build(settings, D1, 1, tables=GOLD_TABLES[:-1])
    with pytest.raises(PublishError, match=GOLD_TABLES[-1]):
        stage(_store(settings), D1, build)


def test_a_rerun_replaces_the_whole_date_and_older_dates_stay_queryable(settings):
    store = _store(settings)
    stage(store, D1, _build(settings, D1, 1))
    publish(settings, D1)
    stage(store, D2, _build(settings, D2, 2))
    publish(settings, D2)
    # Re-running D2: until its manifest is replaced, analysts see the first run of D2, whole.
    stage(store, D2, _build(settings, D2, 3))
    assert {t: _markers(settings, t) for t in GOLD_TABLES} == {t: [2] for t in GOLD_TABLES if t not in ("group_health", "cross_platform_overlap")} | {
        "group_health": [1, 2], "cross_platform_overlap": [1, 2]}  # fmt: skip
    publish(settings, D2)
    assert _markers(settings) == [3]
    assert _markers(settings, "group_health") == [1, 3]
    assert _markers(settings, as_of=D1) == [1]  # as published on D1


def test_prune_keeps_recent_publications_and_every_file_they_name(settings):
    store = _store(settings)
    builds = {}
    # Silver: a date rewritten by a later run; only the newest version's files are live.
    replaced, live = new_build(), new_build()
    store.put(f"silver/events/{replaced}/_date={D1}/part-0.parquet", b"silver before a late event")
    live_files = [f"silver/events/{live}/_date={D1}/part-0.parquet", f"silver/identity_map/{live}/part-0.parquet"]
    for key in live_files:
        store.put(key, b"silver now")
    silver_log.commit(
        store, silver_log.SilverVersion(1, "Asia/Shanghai", {}, {D1.isoformat(): {"files": live_files[:1], "rows": 1}}, live_files[1:])
    )
    for marker, day in enumerate((D1, D2, D3), 1):
        builds[day] = _build(settings, day, marker)
        stage(store, day, builds[day])
        publish(settings, day)
    superseded = _build(settings, D3, 9)  # built, never staged: a failed run's leftovers
    # Builds younger than a day are never removed (a run may be writing them), silver ones neither.
    assert prune(store, keep_days=10_000, now=datetime.now(timezone.utc)) == {"publications": 0, "builds": 0, "silver": 0}
    now = datetime.now(timezone.utc) + timedelta(days=2)
    keep = (now.date() - D2).days  # D2 is just inside, D1 just outside
    assert prune(store, keep_days=keep, now=now) == {"publications": 1, "builds": 16, "silver": 1}  # D1's and the unstaged build
    assert [k for k in store.list("silver") if "/_versions/" not in k] == sorted(live_files)
    assert published_dates(store) == [D2, D3]
    assert not [k for k in store.list("gold") if superseded in k or builds[D1] in k]
    assert _markers(settings) == [3]
    assert _markers(settings, "group_health") == [2, 3]
    assert prune(store, keep_days=0, now=now) == {"publications": 1, "builds": 8, "silver": 0}
    assert published_dates(store) == [D3]  # the newest always stays
    assert _markers(settings) == [3]
    if isinstance(store, LocalStore):
        assert sorted(p.name for p in (store.root / "gold" / "join_conversion").iterdir()) == [f"as_of_date={D3}"]


def test_a_date_published_by_an_older_version_asks_for_a_rerun(settings):
    store = _store(settings)
    stage(store, D1, _build(settings, D1, 1))
    publish(settings, D1)
    # Before manifests, a publication named one folder per table.
    store.put(f"published/{D2}.json", json.dumps({"as_of_date": str(D2), "tables": {t: f"/old/gold/{t}" for t in GOLD_TABLES}}).encode())
    with pytest.raises(PublishError, match=f"older version.*engagement run --as-of {D2}"):
        run_query(store, "SELECT * FROM join_conversion")
