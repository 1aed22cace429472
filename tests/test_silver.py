"""Silver on small hand-written bronze frames: typing, reporting-zone dates, dedup, persons."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from core import tables
from jobs.schemas import spark_schema
from jobs.silver import build_silver

INGEST = datetime(2026, 3, 20, tzinfo=timezone.utc)
AS_OF = date(2026, 3, 5)


def _bronze_event(event_id, platform, user_id, event_time, *, offset, topic=None, event_type="like"):
    topic = topic or f"engagement.{platform}.events"
    return {
        "event_id": event_id,
        "schema_version": 1,
        "event_type": event_type,
        "platform": platform,
        "user_id": user_id,
        "event_time": event_time,
        "content_id": "c-1",
        "group_id": None,
        "channel": None,
        "inviter_user_id": None,
        "target_platform": None,
        "extra": None,
        "kafka_topic": topic,
        "kafka_partition": 0,
        "kafka_offset": offset,
        "kafka_key": user_id,
        "kafka_timestamp": None,
        "ingest_time": INGEST,
    }


def _link(link_id, kuaishou, openid, unionid, linked_at):
    return {
        "link_id": link_id,
        "kuaishou_user_id": kuaishou,
        "wechat_openid": openid,
        "wechat_unionid": unionid,
        "linked_at": linked_at,
        "extra": None,
        "kafka_topic": "engagement.identity",
        "kafka_partition": 0,
        "kafka_offset": 0,
        "kafka_key": kuaishou,
        "kafka_timestamp": None,
        "ingest_time": INGEST,
    }


@pytest.fixture()
def silver(spark):
    events = [
        # 16:30Z on 03-01 is 00:30 on 03-02 in Asia/Shanghai; 15:59:59Z stays on 03-01.
        _bronze_event("e-1", "kuaishou", "k1", "2026-03-01T16:30:00Z", offset=0),
        _bronze_event("e-2", "kuaishou", "k1", "2026-03-01T15:59:59Z", offset=1),
        # Lower-case t/z is RFC 3339 too.
        _bronze_event("e-3", "wechat", "o1", "2026-03-02t08:00:00.125z", offset=0),
        # A redelivery of e-3 at a later offset, carrying different content: the first copy wins.
        _bronze_event("e-3", "wechat", "o1", "2026-03-03T08:00:00Z", offset=7),
        # Local 03-06: silver holds every date (gold bounds what it uses by as_of_date).
        _bronze_event("e-4", "wechat", "o2", "2026-03-06T00:10:00+08:00", offset=1),
        _bronze_event("e-5", "wechat", "o2", "2026-03-05T23:50:00+08:00", offset=2),
    ]
    links = [
        # Linked after as_of_date: a person is still one person (links are not bounded by date).
        _link("l-1", "k1", "o1", None, "2026-03-30T00:00:00Z"),
        _link("l-1", "k1", "o1", None, "2026-03-30T00:00:00Z"),  # redelivered link
    ]
    bronze_events = spark.createDataFrame(events, spark_schema(tables.BRONZE_EVENTS))
    bronze_identity = spark.createDataFrame(links, spark_schema(tables.BRONZE_IDENTITY))
    return build_silver(bronze_events, bronze_identity, timezone="Asia/Shanghai")


def test_events_are_typed_dated_in_the_reporting_zone_and_deduplicated(silver):
    events, _ = silver
    rows = {r["event_id"]: r for r in events.collect()}
    assert sorted(rows) == ["e-1", "e-2", "e-3", "e-4", "e-5"]
    assert {k: r["event_date"] for k, r in rows.items()} == {
        "e-1": date(2026, 3, 2),
        "e-2": date(2026, 3, 1),
        "e-3": date(2026, 3, 2),
        "e-4": date(2026, 3, 6),
        "e-5": date(2026, 3, 5),
    }
    assert rows["e-3"]["event_time"] == datetime(2026, 3, 2, 8, 0, 0, 125000)  # the offset-0 copy, in UTC


def test_accounts_of_one_person_share_a_person_id(silver):
    events, identity_map = silver
    persons = {(r["platform"], r["user_id"]): r["person_id"] for r in identity_map.collect()}
    assert set(persons) == {("kuaishou", "k1"), ("wechat", "o1"), ("wechat", "o2")}
    assert persons[("kuaishou", "k1")] == persons[("wechat", "o1")] != persons[("wechat", "o2")]
    by_event = {r["event_id"]: r["person_id"] for r in events.collect()}
    assert by_event["e-1"] == by_event["e-3"] == persons[("wechat", "o1")]
    assert by_event["e-5"] == persons[("wechat", "o2")]


@pytest.mark.parametrize("broadcast_ids", [False, True], ids=["shuffled", "broadcast"])
def test_a_later_run_takes_a_copy_only_when_it_is_earlier_than_the_one_silver_holds(spark, broadcast_ids):
    from jobs.silver import earlier_copies, first_copies

    held = first_copies(
        spark.createDataFrame(
            [
                _bronze_event("kept", "wechat", "o1", "2026-03-02T08:00:00Z", offset=5),
                _bronze_event("moved", "wechat", "o1", "2026-03-02T08:00:00Z", offset=9, topic="engagement.wechat.events"),
            ],
            spark_schema(tables.BRONZE_EVENTS),
        ),
        timezone="Asia/Shanghai",
    )
    later = [
        _bronze_event("kept", "wechat", "o1", "2026-03-04T08:00:00Z", offset=6),  # a redelivery: later offset
        _bronze_event("moved", "wechat", "o1", "2026-02-27T08:00:00Z", offset=3),  # earlier offset: replaces
        _bronze_event("new", "wechat", "o2", "not a time", offset=7),  # unparsed: kept, without a date
    ]
    candidates = first_copies(spark.createDataFrame(later, spark_schema(tables.BRONZE_EVENTS)), timezone="Asia/Shanghai")
    rows = {r["event_id"]: r for r in earlier_copies(candidates, held, broadcast_ids=broadcast_ids).collect()}
    assert sorted(rows) == ["moved", "new"]
    assert (rows["moved"]["event_date"], rows["moved"]["replaces"], rows["moved"]["replaced_date"]) == (
        date(2026, 2, 27), True, date(2026, 3, 2),
    )
    assert (rows["new"]["event_date"], rows["new"]["replaces"]) == (None, False)


def test_the_dates_to_compare_are_those_whose_id_hashes_match_a_new_id_or_that_have_none(spark):
    from pyspark.sql import functions as F

    from jobs.silver import dates_to_compare

    held = spark.createDataFrame(
        [
            ("a", date(2026, 3, 1), True),
            ("b", date(2026, 3, 2), True),
            ("c", date(2026, 3, 3), True),  # a new id's copy
            ("d", date(2026, 3, 4), False),  # a file without hashes: always compared
            ("e", None, True),  # an unparsed copy of a new id
            ("f", None, True),
        ],
        "event_id string, event_date date, hashed boolean",
    )
    # Spark's own xxhash64, as silver's files hold it (a NULL where a file has no hash).
    held = held.select("event_date", F.when(F.col("hashed"), F.xxhash64("event_id")).alias("event_id_hash"))
    candidates = spark.createDataFrame([("c",), ("e",), ("z",)], "event_id string")
    dates = sorted(dates_to_compare(held, candidates).collect(), key=lambda r: (r[0] is not None, r[0]))
    assert [r["event_date"] for r in dates] == [None, date(2026, 3, 3), date(2026, 3, 4)]


def _copy(event_id, event_time, *, topic, partition, offset):
    row = _bronze_event(event_id, "wechat", "o1", event_time, offset=offset, topic=topic)
    return {**row, "kafka_partition": partition}


WECHAT, KUAISHOU = "engagement.wechat.events", "engagement.kuaishou.events"


@pytest.mark.parametrize("how", ["sorted by id", "kept where read"])
def test_the_first_copy_is_the_one_of_the_smallest_topic_partition_and_offset(spark, how):
    from jobs.silver import first_copies, first_of_repeated, repeated_ids

    bronze = spark.createDataFrame(
        [
            # Each copy has a date of its own, which says which copy was kept.
            _copy("by-partition", "2026-03-01T08:00:00Z", topic=WECHAT, partition=1, offset=3),
            _copy("by-partition", "2026-03-02T08:00:00Z", topic=WECHAT, partition=0, offset=9),
            _copy("by-topic", "2026-03-03T08:00:00Z", topic=WECHAT, partition=0, offset=1),
            _copy("by-topic", "2026-03-04T08:00:00Z", topic=KUAISHOU, partition=2, offset=5),
            _copy("by-offset", "2026-03-05T08:00:00Z", topic=WECHAT, partition=0, offset=4),
            _copy("by-offset", "2026-03-06T08:00:00Z", topic=WECHAT, partition=0, offset=2),
            _copy("by-offset", "2026-03-07T08:00:00Z", topic=WECHAT, partition=0, offset=8),
            _copy("once", "2026-03-08T08:00:00Z", topic=WECHAT, partition=1, offset=4),
            _copy("unparsed", "not a time", topic=WECHAT, partition=1, offset=5),
            # The first copy is unparsed: the id stays without a date.
            _copy("unparsed-first", "not a time", topic=WECHAT, partition=0, offset=10),
            _copy("unparsed-first", "2026-03-09T08:00:00Z", topic=WECHAT, partition=0, offset=11),
        ],
        spark_schema(tables.BRONZE_EVENTS),
    )
    firsts = first_of_repeated(bronze, repeated_ids(bronze)) if how == "kept where read" else None
    rows = first_copies(bronze, timezone="UTC", firsts=firsts).collect()
    assert sorted((r["event_id"], r["event_date"], r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows) == [
        ("by-offset", date(2026, 3, 6), WECHAT, 0, 2),
        ("by-partition", date(2026, 3, 2), WECHAT, 0, 9),
        ("by-topic", date(2026, 3, 4), KUAISHOU, 2, 5),
        ("once", date(2026, 3, 8), WECHAT, 1, 4),
        ("unparsed", None, WECHAT, 1, 5),
        ("unparsed-first", None, WECHAT, 0, 10),
    ]


# An id delivered twice (two offsets), one once, and a message held twice (one offset), which
# the loader never writes.
REDELIVERED = [
    _copy("redelivered", "2026-03-01T08:00:00Z", topic=WECHAT, partition=0, offset=1),
    _copy("redelivered", "2026-03-01T08:00:00Z", topic=WECHAT, partition=1, offset=1),
    _copy("once", "2026-03-01T08:00:00Z", topic=WECHAT, partition=0, offset=3),
]
DOUBLED = [_copy("doubled", "2026-03-01T08:00:00Z", topic=WECHAT, partition=0, offset=2)] * 2


def test_the_repeated_ids_say_where_bronze_holds_a_message_twice(spark):
    from jobs.silver import first_of_repeated, repeated_ids

    bronze = spark.createDataFrame(REDELIVERED + DOUBLED, spark_schema(tables.BRONZE_EVENTS))
    rows = {r["event_id"]: (tuple(r["first"]), r["doubled"]) for r in first_of_repeated(bronze, repeated_ids(bronze)).collect()}
    assert rows == {"redelivered": ((WECHAT, 0, 1), False), "doubled": ((WECHAT, 0, 2), True)}


def test_a_full_refresh_sorts_every_copy_when_bronze_holds_a_message_twice_or_too_many_ids_repeat(spark, monkeypatch):
    from engagement import incremental

    schema = spark_schema(tables.BRONZE_EVENTS)
    firsts = incremental._first_of_repeated_ids(spark.createDataFrame(REDELIVERED, schema))
    assert [(r["event_id"], tuple(r["first"])) for r in firsts.collect()] == [("redelivered", (WECHAT, 0, 1))]
    assert incremental._first_of_repeated_ids(spark.createDataFrame(REDELIVERED + DOUBLED, schema)) is None
    monkeypatch.setattr(incremental, "BROADCAST_IDS_AT_MOST", 0)
    assert incremental._first_of_repeated_ids(spark.createDataFrame(REDELIVERED, schema)) is None
