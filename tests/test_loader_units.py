"""The loader's pure pieces: routing one message to bronze or quarantine, dead-letter headers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa

from core import layout
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
