"""The loader's pure pieces: routing one message, and crash recovery of the bronze files."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from core import layout, loader_log
from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, Rejection
from streaming import bronze
from streaming.loader import dead_letter_headers, route

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
LIKE = {
    "event_id": "e-1",
    "schema_version": 1,
    "event_type": "like",
    "platform": "kuaishou",
    "user_id": "ks-1",
    "event_time": "2026-03-01T20:15:03.250+08:00",
    "content_id": "video-9",
    "group_id": "g-1",
    "client": "ios",
}


def test_valid_event_goes_to_bronze_with_kafka_coordinates_and_extras():
    routed = route(KUAISHOU_TOPIC, 2, 41, b"ks-1", json.dumps(LIKE).encode(), 1_772_367_303_250, NOW)
    assert routed.table == layout.BRONZE_EVENTS
    assert routed.rejection is None
    row = routed.row
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"], row["kafka_key"]) == (KUAISHOU_TOPIC, 2, 41, "ks-1")
    assert row["event_time"] == "2026-03-01T20:15:03.250+08:00"  # kept as it arrived
    assert row["channel"] is None
    assert json.loads(row["extra"]) == {"client": "ios"}
    assert row["kafka_timestamp"] == datetime(2026, 3, 1, 12, 15, 3, 250000, tzinfo=timezone.utc)
    # The row fits the bronze schema exactly.
    assert pa.Table.from_pylist([row], schema=bronze.BRONZE_EVENTS_SCHEMA).num_rows == 1


def test_invalid_event_goes_to_quarantine_with_original_bytes_and_reason():
    value = b"\xff not utf-8"
    routed = route(KUAISHOU_TOPIC, 0, 7, b"k", value, None, NOW)
    assert routed.table == layout.QUARANTINE
    assert routed.row["value"] == value
    assert routed.row["kafka_key"] == b"k"
    assert routed.row["error_class"] == "InvalidUtf8"
    assert pa.Table.from_pylist([routed.row], schema=bronze.QUARANTINE_SCHEMA).num_rows == 1


def test_identity_link_goes_to_bronze_identity():
    link = {"link_id": "l", "kuaishou_user_id": "k", "wechat_openid": "o", "linked_at": "2026-03-01T00:00:00Z"}
    routed = route(IDENTITY_TOPIC, 0, 0, b"k", json.dumps(link).encode(), None, NOW)
    assert routed.table == layout.BRONZE_IDENTITY
    assert routed.row["wechat_unionid"] is None and routed.row["extra"] is None


def test_dead_letter_headers_name_source_and_error():
    headers = dict(dead_letter_headers(KUAISHOU_TOPIC, 1, 99, Rejection("InvalidJson", "boom")))
    assert headers == {
        "engagement.errors.topic": KUAISHOU_TOPIC.encode(),
        "engagement.errors.partition": b"1",
        "engagement.errors.offset": b"99",
        "engagement.errors.class": b"InvalidJson",
        "engagement.errors.message": b"boom",
    }


def _empty(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([], schema=schema)


def test_atomic_write_names_file_by_offset_range(tmp_path):
    directory = layout.partition_dir(tmp_path, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 1)
    path = bronze.write_atomically(_empty(bronze.BRONZE_EVENTS_SCHEMA), directory, layout.OffsetRange(0, 99))
    assert path.name == "00000000000000000000-00000000000000000099.parquet"
    assert pq.read_table(path).schema.equals(bronze.BRONZE_EVENTS_SCHEMA, check_metadata=False)
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temporary left behind


def _events(*offsets: int) -> pa.Table:
    rows = [
        route(KUAISHOU_TOPIC, 0, o, None, json.dumps({**LIKE, "event_id": f"e-{o}"}).encode(), None, NOW).row for o in offsets
    ]
    return pa.Table.from_pylist(rows, schema=bronze.BRONZE_EVENTS_SCHEMA)


def _publish(warehouse, first: int, last: int) -> loader_log.Commit:
    return bronze.publish_range(
        warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0, layout.OffsetRange(first, last),
        _events(*range(first, last + 1)), _empty(bronze.QUARANTINE_SCHEMA),
    )  # fmt: skip


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def test_recovery_resumes_after_last_commit_and_drops_files_no_commit_can_name(tmp_path):
    warehouse = tmp_path
    assert bronze.recover_partition(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) is None
    bronze_dir = layout.partition_dir(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0)
    quarantine_dir = layout.partition_dir(warehouse, layout.QUARANTINE, KUAISHOU_TOPIC, 0)
    assert _publish(warehouse, 0, 9) == loader_log.Commit(0, 9, 10, 0)
    assert _publish(warehouse, 10, 24) == loader_log.Commit(10, 24, 15, 0)
    # Left by a crash or a stale loader: files of 10-20 (another range at a committed first
    # offset: no commit can ever name them), of 25-30 (written, not yet committed: a loader may
    # be about to commit them) and a half-written temporary.
    for directory, schema in ((bronze_dir, bronze.BRONZE_EVENTS_SCHEMA), (quarantine_dir, bronze.QUARANTINE_SCHEMA)):
        for first, last in ((10, 20), (25, 30)):
            bronze.write_atomically(_empty(schema), directory, layout.OffsetRange(first, last))
    (bronze_dir / ".00000000000000000031-00000000000000000040.parquet.123.tmp").write_bytes(b"half")

    assert bronze.recover_partition(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 25
    assert _names(bronze_dir) == [
        "00000000000000000000-00000000000000000009.parquet",
        "00000000000000000010-00000000000000000024.parquet",
        "00000000000000000025-00000000000000000030.parquet",
    ]
    assert _names(quarantine_dir) == ["00000000000000000025-00000000000000000030.parquet"]
    # Readers see the committed ranges only.
    assert [p.name for p in loader_log.committed_files(warehouse, layout.BRONZE_EVENTS)] == _names(bronze_dir)[:2]
    assert loader_log.committed_files(warehouse, layout.QUARANTINE) == []


def test_of_two_loaders_writing_one_range_exactly_one_commits_it(tmp_path):
    """A loader frozen inside its publish step, evicted, and thawed after another loader took its
    partition: both write offsets 5.., and the commit log decides."""
    warehouse = tmp_path
    bronze_dir = layout.partition_dir(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0)
    _publish(warehouse, 0, 4)
    # The new owner commits 5-9 first; the stale loader (it had read up to 12) loses and its
    # file goes; the new owner then commits 10-12 on top.
    assert _publish(warehouse, 5, 9) == loader_log.Commit(5, 9, 5, 0)
    assert _publish(warehouse, 5, 12) == loader_log.Commit(5, 9, 5, 0)
    assert _publish(warehouse, 10, 12) == loader_log.Commit(10, 12, 3, 0)
    # The same range written twice is the same records: whoever commits, one copy is seen.
    assert _publish(warehouse, 13, 14) == _publish(warehouse, 13, 14) == loader_log.Commit(13, 14, 2, 0)
    files = loader_log.committed_files(warehouse, layout.BRONZE_EVENTS)
    offsets = [o for f in files for o in pq.read_table(f, columns=["kafka_offset"]).column(0).to_pylist()]
    assert offsets == list(range(15))
    assert _names(bronze_dir) == [f.name for f in files]
    assert bronze.recover_partition(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 15


def test_a_stale_loader_that_commits_first_wins_and_the_owner_resumes_after_it(tmp_path):
    warehouse = tmp_path
    _publish(warehouse, 0, 4)
    assert _publish(warehouse, 5, 12) == loader_log.Commit(5, 12, 8, 0)  # the stale loader, first
    assert _publish(warehouse, 5, 9) == loader_log.Commit(5, 12, 8, 0)  # the owner loses ...
    assert bronze.recover_partition(warehouse, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 13  # ... and resumes
    files = loader_log.committed_files(warehouse, layout.BRONZE_EVENTS)
    assert [f.name for f in files] == [
        "00000000000000000000-00000000000000000004.parquet",
        "00000000000000000005-00000000000000000012.parquet",
    ]
