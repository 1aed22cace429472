"""Incremental daily runs give exactly the rows of a full refresh over the same bronze.

Generated traffic (late events, redeliveries, invalid messages) arrives day by day; identity
links are held back five or six days, so they arrive after the events of the accounts they join
(and a person's two links often in different runs), and
one whole day of events arrives five days late. Bronze
is written by the loader's own routing and commit code (``streaming.loader.route``,
``streaming.bronze.publish_range``), two partitions per topic, without a broker: this test is
about what happens after bronze. After every daily run the bronze is copied to a second
warehouse and rebuilt there with ``--full-refresh``; all eight tables must be equal. Along the
way: a re-run of the same day with nothing new, a backfill of an earlier date after newer data
arrived, a redelivery whose copy with the smaller coordinates arrives last, on another day, and
a copy of an identity link that names another account than the link (the run must then resolve
the whole identity graph again; the other days apply their links to the map they have).
A second test holds every identity link back to the last of 20 days, so the late links reach
propagation rows older than any cohort that day's run recomputes for its new events.
"""

from __future__ import annotations

import json
import logging
import shutil
import zlib
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from gold_rows import gold_rows

from core import silver_log
from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, parse_rfc3339
from core.layout import OffsetRange, bronze_table_for, published_dates
from core.settings import Settings
from core.storage import LocalStore
from core.tables import GOLD_TABLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 9, 1)
DAYS = 13
FIRST_RUN = START + timedelta(days=6)
LINK_DELAY_DAYS = 5
# A whole day of events held back until the last run, five days late: it reaches
# join_conversion and retention rows that the recent days' late events do not.
DELAYED_DAY = START + timedelta(days=7)
DELAYED_UNTIL = START + timedelta(days=DAYS - 1)
ZONE = ZoneInfo("Asia/Shanghai")
PARTITIONS = 2


class Bronze:
    """Writes messages into a warehouse's bronze the way the loader does, partition by key."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.next_offset: dict[tuple[str, int], int] = defaultdict(int)

    def deliver(self, messages, *, partition: int | None = None) -> None:
        from streaming import bronze
        from streaming.loader import route

        parts: dict[tuple[str, int], list] = defaultdict(list)
        for m in messages:
            p = partition if partition is not None else zlib.crc32(m.key or b"") % PARTITIONS
            parts[(m.topic, p)].append(m)
        ingest = datetime.now(timezone.utc)
        for (topic, p), batch in sorted(parts.items()):
            first = self.next_offset[(topic, p)]
            routed = [route(topic, p, first + i, m.key, m.value, None, ingest) for i, m in enumerate(batch)]
            table = bronze_table_for(topic, IDENTITY_TOPIC)
            rows = [r.row for r in routed if r.rejection is None]
            bad = [r.row for r in routed if r.rejection is not None]
            commit = bronze.publish_range(
                self.store, table, topic, p, OffsetRange(first, first + len(batch) - 1),
                pa.Table.from_pylist(rows, schema=bronze.SCHEMAS[table]),
                pa.Table.from_pylist(bad, schema=bronze.QUARANTINE_SCHEMA),
            )  # fmt: skip
            assert commit.last == first + len(batch) - 1
            self.next_offset[(topic, p)] = first + len(batch)


def _generated(*, days: int, late_rate: float):
    from streaming.generator import GeneratorConfig, generate

    config = GeneratorConfig(
        start_date=START, days=days, seed=23, kuaishou_users=700, wechat_users=350, kuaishou_groups=20,
        wechat_groups=40, duplicate_rate=0.02, invalid_rate=0.003, late_rate=late_rate,
    )  # fmt: skip
    return generate(config)


def _traffic():
    by_day: dict[date, list] = defaultdict(list)
    for m in _generated(days=DAYS, late_rate=0.08):
        day = m.emit_date + timedelta(days=_link_delay(m)) if m.topic == IDENTITY_TOPIC else m.emit_date
        if m.valid and m.topic != IDENTITY_TOPIC and _event_date(m) == DELAYED_DAY:
            day = DELAYED_UNTIL
        by_day[day].append(m)
    return by_day


def _link_delay(message) -> int:
    """Days a link is held back: one more for about half of them, so that a person's two links
    (a UnionID's second OpenID) often arrive in different runs and the later one merges into
    a person an earlier run resolved."""
    return LINK_DELAY_DAYS + zlib.crc32((message.event_id or "").encode()) % 2


def _event_date(message) -> date:
    return parse_rfc3339(json.loads(message.value)["event_time"]).astimezone(ZONE).date()


def _moved_copy(message, *, hours: int):
    """The same event_id with another time: a redelivery whose content differs."""
    record = json.loads(message.value)
    when = datetime.fromisoformat(record["event_time"]) - timedelta(hours=hours)
    record["event_time"] = when.isoformat()
    return replace(message, value=json.dumps(record).encode())


def _changed_link_copy(messages):
    """A copy of the first of ``messages``' links, made an hour earlier and naming another
    OpenID: deduplication by ``link_id`` prefers the earlier copy, so the first OpenID loses its
    edge and leaves the person, which no new link can do to a map built before (the daily run
    must resolve the whole graph again)."""
    message, record = next((m, json.loads(m.value)) for m in messages if m.topic == IDENTITY_TOPIC and m.valid)
    earlier = parse_rfc3339(record["linked_at"]) - timedelta(hours=1)
    changed = dict(record, wechat_openid=record["wechat_openid"] + "-changed", linked_at=earlier.isoformat())
    return replace(message, value=json.dumps(changed).encode())


def _full_refresh(spark, settings: Settings, as_of: date, tmp_path, *, gates: bool = False) -> Settings:
    """A copy of ``settings``' bronze, rebuilt with a full refresh as of ``as_of``: the whole daily
    run, or (to keep the test short) its building steps without the three quality gates."""
    from engagement import pipeline
    from engagement.incremental import plan_bronze

    other = replace(settings, home=tmp_path / f"full-{as_of}-{len(list(tmp_path.iterdir()))}")
    shutil.copytree(settings.warehouse / "bronze", other.warehouse / "bronze")
    if gates:
        pipeline.run_daily(spark, other, as_of, full_refresh=True)
        return other
    plan_bronze(LocalStore(other.warehouse), as_of, full_refresh=True)
    for step in (pipeline.build_silver, pipeline.build_gold, pipeline.publish):
        step(spark, other, as_of)
    return other


def _assert_same_gold(incremental: Settings, full: Settings, as_of: date) -> None:
    # Persons first: silver's identity map must match before gold can.
    assert _identity_map(incremental) == _identity_map(full), f"identity_map after the run of {as_of}"
    for table in GOLD_TABLES:
        expected = gold_rows(full.warehouse, table, as_of)
        assert gold_rows(incremental.warehouse, table, as_of) == expected, f"{table} as of {as_of}"


def test_many_daily_runs_equal_a_full_refresh(spark, tmp_path, caplog):
    from engagement.pipeline import run_daily

    # At most two files a date: late events reach most dates on three or four runs, so dates are
    # merged into one file again and again.
    settings = replace(
        Settings.from_env(), home=tmp_path / "incremental", spark_shuffle_partitions=2, silver_max_files_per_date=2
    )
    bronze = Bronze(LocalStore(settings.warehouse))
    by_day = _traffic()
    bronze.deliver([m for day in sorted(by_day) if day <= FIRST_RUN for m in by_day[day]])

    # A kuaishou like loaded on partition 1 now; its copy on partition 0, three days earlier in
    # event time, arrives later: it has the smaller coordinates, so it replaces the first.
    like = next(
        m for m in by_day[FIRST_RUN]
        if m.topic == KUAISHOU_TOPIC and m.valid and json.loads(m.value)["event_type"] == "like"
        and zlib.crc32(m.key) % PARTITIONS == 1
    )  # fmt: skip
    bronze.deliver([like], partition=1)

    modes = {}
    relinked_days = []
    for as_of in [FIRST_RUN + timedelta(days=i) for i in range(DAYS - 6)]:
        if as_of > FIRST_RUN:
            bronze.deliver(by_day.get(as_of, []))
        if as_of == FIRST_RUN + timedelta(days=3):
            bronze.deliver([_moved_copy(like, hours=72)], partition=0)
        if as_of == FIRST_RUN + timedelta(days=4):
            delivered = [m for day in sorted(by_day) if day < as_of for m in by_day[day]]
            bronze.deliver([_changed_link_copy(delivered)])
        with caplog.at_level(logging.INFO, logger="engagement.incremental"):
            result = run_daily(spark, settings, as_of)
        relinked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("identity:")]
        relinked_days += relinked
        caplog.clear()
        modes[as_of] = _staged_mode(settings, as_of)
        _assert_same_gold(settings, _full_refresh(spark, settings, as_of, tmp_path, gates=as_of == FIRST_RUN), as_of)
        if as_of == FIRST_RUN + timedelta(days=4):
            assert relinked == ["identity: the whole graph resolved again (a link's copies name different accounts)"]
        if as_of == FIRST_RUN + timedelta(days=2):
            run_daily(spark, settings, as_of)  # the same day again, nothing new
            assert _staged_mode(settings, as_of) == "incremental"
            _assert_same_gold(settings, _full_refresh(spark, settings, as_of, tmp_path), as_of)
        assert result.silver_counts["events"] > 0

    last = max(published_dates(settings.warehouse))
    # A backfill of an earlier date, over everything that has arrived since.
    backfill = last - timedelta(days=4)
    run_daily(spark, settings, backfill)
    _assert_same_gold(settings, _full_refresh(spark, settings, backfill, tmp_path), backfill)

    assert modes[FIRST_RUN] == "full"
    assert any("the persons they reach resolved again" in m for m in relinked_days), relinked_days
    assert set(list(modes.values())[1:]) == {"incremental"}, modes
    head = silver_log.head(LocalStore(settings.warehouse))
    # One silver, updated in place: each run added a version, and no date was copied per run.
    assert head.number == len(modes) + 2
    assert len({f.split("/")[2] for f in head.event_files()}) > 1, "every date was rewritten by the last run"
    # Late events were added to their dates as files of their own, beside the earlier ones.
    assert any(len({f.split("/")[2] for f in part["files"]}) > 1 for part in head.events.values()), head.events
    # ... and a date that already held two files was merged into one when events reached it again.
    store = LocalStore(settings.warehouse)
    versions = [silver_log.read_version(store, n) for n in silver_log.version_numbers(store)]
    for version in versions:
        assert max(len(part["files"]) for part in version.events.values()) <= 2, version.events
    merged = [
        (after.number, day)
        for before, after in zip(versions, versions[1:])
        for day in after.changes.dates
        if len(before.events.get(day.isoformat(), {"files": []})["files"]) == 2
    ]
    assert merged and all(len(versions[n - 1].events[day.isoformat()]["files"]) == 1 for n, day in merged), merged


def test_links_that_arrive_late_reach_propagation_rows_older_than_every_recomputed_cohort(spark, tmp_path):
    """Every identity link is held back until the last day, with no late events: that day's run
    recomputes join_conversion from a week before it only, but the links make persons of
    accounts whose likes are two weeks older, and those like dates' propagation rows (none
    before, since nobody was linked) must appear as in a full refresh."""
    from engagement.pipeline import run_daily

    days = 20
    last = START + timedelta(days=days - 1)
    settings = replace(Settings.from_env(), home=tmp_path / "late-links", spark_shuffle_partitions=2)
    bronze = Bronze(LocalStore(settings.warehouse))
    messages = list(_generated(days=days, late_rate=0.0))
    links = [m for m in messages if m.topic == IDENTITY_TOPIC]
    bronze.deliver([m for m in messages if m.topic != IDENTITY_TOPIC and m.emit_date < last])
    run_daily(spark, settings, last - timedelta(days=1))
    assert gold_rows(settings.warehouse, "cross_platform_propagation", last - timedelta(days=1)) == []

    bronze.deliver(links + [m for m in messages if m.topic != IDENTITY_TOPIC and m.emit_date == last])
    run_daily(spark, settings, last)
    assert _staged_mode(settings, last) == "incremental"
    full = _full_refresh(spark, settings, last, tmp_path)
    _assert_same_gold(settings, full, last)
    # The scenario holds: rows on like dates older than every join_conversion cohort the run
    # recomputed (from 8 days before its earliest new event date, last, on) and their events.
    old = [row for row in gold_rows(full.warehouse, "cross_platform_propagation", last)
           if row[0] < last - timedelta(days=10)]  # fmt: skip
    assert len(old) >= 5 and all(row[1] > 0 for row in old), old


@pytest.mark.parametrize("files", ["with id hashes", "written before id hashes were kept", "hashed by another Spark"])
def test_a_daily_run_drops_a_redelivery_of_an_earlier_date(spark, tmp_path, files):
    """The run compares new ids with the held ids of the dates whose id hashes match, of every
    date whose files have no hashes, and of every date when silver's hashes were computed by
    another Spark than the run's (another release's xxhash64, or a cluster's own)."""
    import pyarrow.parquet as pq

    from engagement.incremental import plan_bronze, update_silver

    settings = replace(Settings.from_env(), home=tmp_path, spark_shuffle_partitions=2)
    store = LocalStore(settings.warehouse)
    bronze = Bronze(store)
    by_day = _traffic()
    first, second = START, START + timedelta(days=1)
    bronze.deliver(by_day[first])
    plan_bronze(store, first, full_refresh=False)
    held = update_silver(spark, store, settings, first)
    if files == "written before id hashes were kept":
        for key in held.event_files(unparsed=True):
            path = store.path(key)
            pq.write_table(pq.read_table(path).drop_columns(["event_id_hash"]), path)
            (path.parent / f".{path.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old bytes
    if files == "hashed by another Spark":
        # As a Spark whose xxhash64 gives other values would have written them and recorded it.
        for key in held.event_files(unparsed=True):
            path = store.path(key)
            table = pq.read_table(path)
            other = [zlib.crc32(i.encode()) for i in table["event_id"].to_pylist()]
            column = table.schema.get_field_index("event_id_hash")
            pq.write_table(table.set_column(column, "event_id_hash", pa.array(other, pa.int64())), path)
            (path.parent / f".{path.name}.crc").unlink(missing_ok=True)
        assert held.id_hash_check is not None
        other_check = tuple(zlib.crc32(str(h).encode()) for h in held.id_hash_check)
        store.path(silver_log.version_key(held.number)).write_bytes(replace(held, id_hash_check=other_check).to_json())
    again = next(m for m in by_day[first] if m.valid and m.topic == KUAISHOU_TOPIC)
    bronze.deliver([again, *by_day[second]])
    plan_bronze(store, second, full_refresh=False)
    version = update_silver(spark, store, settings, second)

    ids = [i for key in version.event_files(unparsed=True) for i in pq.read_table(store.path(key), columns=["event_id"])["event_id"].to_pylist()]
    assert ids.count(again.event_id) == 1
    assert len(ids) == len(set(ids)) > len(by_day[second])
    if files == "hashed by another Spark":
        # Its files are of two Sparks now: no later daily run relies on their hashes; a full
        # refresh, which writes every file again, makes them of one.
        assert version.id_hash_check is None
        plan_bronze(store, second, full_refresh=True)
        assert update_silver(spark, store, settings, second).id_hash_check == held.id_hash_check


def _identity_map(settings: Settings) -> list[tuple]:
    import pyarrow.parquet as pq

    store = LocalStore(settings.warehouse)
    keys = silver_log.head(store).identity_map
    return sorted(tuple(row.values()) for key in keys for row in pq.read_table(settings.warehouse / key).to_pylist())


def _staged_mode(settings: Settings, as_of: date) -> str:
    from engagement.publish import publication

    return publication(settings.warehouse, as_of)["mode"]


def test_a_run_that_loses_the_silver_commit_builds_on_the_winner(spark, tmp_path, monkeypatch):
    """Two runs building silver at once (an Airflow backfill): the loser starts again from the
    winner's version instead of failing."""
    from engagement import pipeline

    settings = replace(Settings.from_env(), home=tmp_path / "race", spark_shuffle_partitions=2)
    store = LocalStore(settings.warehouse)
    by_day = _traffic()
    Bronze(store).deliver([m for day in sorted(by_day) if day <= START + timedelta(days=2) for m in by_day[day]])
    as_of = START + timedelta(days=2)
    pipeline.validate_bronze(spark, settings, as_of)

    real_commit, raced = silver_log.commit, []

    def commit_after_another_run(store_, version):
        if not raced:  # another run commits the same version number first
            raced.append(real_commit(store_, version))
        return real_commit(store_, version)

    monkeypatch.setattr(silver_log, "commit", commit_after_another_run)
    counts = pipeline.build_silver(spark, settings, as_of)
    head = silver_log.head(store)
    assert [v.number for v in raced] == [1] and head.number == 2
    assert head.changes.dates == frozenset() and not head.changes.everything  # the winner had it all
    assert counts["events"] == raced[0].rows() > 0
