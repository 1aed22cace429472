"""The event contract (DESIGN section 3), on raw message bytes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from core import contract
from core.contract import (
    DEADLETTER_TOPIC,
    IDENTITY_TOPIC,
    KUAISHOU_TOPIC,
    WECHAT_TOPIC,
    Rejection,
    parse_rfc3339,
    validate,
)

LIKE = {
    "event_id": "e-1",
    "schema_version": 1,
    "event_type": "like",
    "platform": "kuaishou",
    "user_id": "ks-1",
    "event_time": "2026-03-01T20:15:03.250+08:00",
    "content_id": "video-9",
    "group_id": "g-1",
    "channel": None,
    "inviter_user_id": None,
    "target_platform": None,
}
JOIN = {**LIKE, "event_type": "join", "content_id": None, "channel": "invite", "inviter_user_id": "ks-2"}
SHARE = {**LIKE, "event_type": "share", "target_platform": "wechat", "platform": "wechat", "user_id": "o-1"}


def _bytes(obj) -> bytes:
    return json.dumps(obj).encode()


def _reject(topic: str, value: bytes | None) -> Rejection:
    result = validate(topic, value)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


def test_valid_events_pass_and_keep_unknown_fields():
    assert validate(KUAISHOU_TOPIC, _bytes(LIKE))["event_id"] == "e-1"
    assert validate(KUAISHOU_TOPIC, _bytes(JOIN))["channel"] == "invite"
    assert validate(WECHAT_TOPIC, _bytes(SHARE))["target_platform"] == "wechat"
    extra = validate(KUAISHOU_TOPIC, _bytes({**LIKE, "client": "ios-9"}))
    assert extra["client"] == "ios-9"


def test_optional_fields_may_be_absent():
    minimal = {k: v for k, v in LIKE.items() if v is not None and k != "group_id"}
    assert validate(KUAISHOU_TOPIC, _bytes(minimal))["user_id"] == "ks-1"


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"{not json", contract.BAD_JSON),
        (b"[1, 2]", contract.NOT_OBJECT),
        (b'"a string"', contract.NOT_OBJECT),
        (None, contract.NOT_OBJECT),
        (b"\xff\xfe{}", contract.BAD_ENCODING),
        # A lone surrogate, escaped: valid JSON, but no UTF-8 text (so no Parquet file) holds it.
        (_bytes({**LIKE, "user_id": "ks-1"}).replace(b'"ks-1"', b'"ks-\\ud800"'), contract.BAD_ENCODING),
        (_bytes({**LIKE, "note": "x"}).replace(b'"x"', b'"\\uDFFF"'), contract.BAD_ENCODING),
        (_bytes({**LIKE, "pad": "x" * (64 * 1024)}), contract.TOO_LARGE),
        (_bytes({**LIKE, "schema_version": "1"}), contract.WRONG_TYPE),
        (_bytes({**LIKE, "schema_version": True}), contract.WRONG_TYPE),
        (_bytes({**LIKE, "schema_version": 2}), contract.BAD_VALUE),
        (_bytes({**LIKE, "user_id": 42}), contract.WRONG_TYPE),
        (_bytes({**LIKE, "user_id": ""}), contract.BAD_VALUE),
        (_bytes({**LIKE, "user_id": "u" * 129}), contract.BAD_VALUE),
        (_bytes({**LIKE, "event_type": "comment"}), contract.BAD_VALUE),
        (_bytes({**LIKE, "platform": "douyin"}), contract.BAD_VALUE),
        (_bytes({**LIKE, "platform": "wechat"}), contract.TOPIC_MISMATCH),
        (_bytes({**LIKE, "event_time": "2026-03-01T20:15:03"}), contract.BAD_VALUE),
        (_bytes({**LIKE, "event_time": "yesterday"}), contract.BAD_VALUE),
        (_bytes({**LIKE, "event_time": 1772367303}), contract.WRONG_TYPE),
        (_bytes({k: v for k, v in LIKE.items() if k != "event_id"}), contract.MISSING_FIELD),
        (_bytes({**LIKE, "content_id": None}), contract.MISSING_FIELD),
        (_bytes({**JOIN, "group_id": None}), contract.MISSING_FIELD),
        (_bytes({**JOIN, "channel": None}), contract.MISSING_FIELD),
        (_bytes({**JOIN, "channel": "billboard"}), contract.BAD_VALUE),
        (_bytes({**LIKE, "event_type": "share", "target_platform": None}), contract.MISSING_FIELD),
    ],
)
def test_each_broken_rule_is_rejected_with_its_class(value, error_class):
    rejection = _reject(KUAISHOU_TOPIC, value)
    assert rejection.error_class == error_class
    assert rejection.message


def test_share_with_wrong_target_platform_and_wrong_topic():
    assert _reject(WECHAT_TOPIC, _bytes({**SHARE, "target_platform": "weibo"})).error_class == contract.BAD_VALUE
    assert _reject(KUAISHOU_TOPIC, _bytes(SHARE)).error_class == contract.TOPIC_MISMATCH
    assert _reject(DEADLETTER_TOPIC, _bytes(LIKE)).error_class == contract.UNKNOWN_TOPIC


def test_message_of_exactly_64_kib_is_not_too_large():
    body = _bytes({**LIKE, "pad": ""})
    padded = _bytes({**LIKE, "pad": "x" * (64 * 1024 - len(body))})
    assert len(padded) == 64 * 1024
    assert not isinstance(validate(KUAISHOU_TOPIC, padded), Rejection)
    assert _reject(KUAISHOU_TOPIC, padded[:-1] + b'x"}').error_class == contract.TOO_LARGE


def test_identity_links():
    link = {
        "link_id": "l-1",
        "kuaishou_user_id": "ks-1",
        "wechat_openid": "o-1",
        "wechat_unionid": None,
        "linked_at": "2026-03-01T12:00:00Z",
    }
    assert validate(IDENTITY_TOPIC, _bytes(link))["link_id"] == "l-1"
    assert _reject(IDENTITY_TOPIC, _bytes({**link, "wechat_openid": None})).error_class == contract.MISSING_FIELD
    assert _reject(IDENTITY_TOPIC, _bytes({**link, "linked_at": "noon"})).error_class == contract.BAD_VALUE


def test_rfc3339_offsets_mean_the_same_instant():
    shanghai = parse_rfc3339("2026-03-02T00:30:00+08:00")
    utc = parse_rfc3339("2026-03-01T16:30:00Z")
    assert shanghai == utc
    assert utc.tzinfo is not None and utc.utcoffset() == timedelta(0)
    nanos = parse_rfc3339("2026-03-01T16:30:00.123456789Z")
    assert nanos == datetime(2026, 3, 1, 16, 30, 0, 123456, tzinfo=timezone.utc)
    assert parse_rfc3339("2026-03-01t16:30:00z") == utc
    for bad in ("2026-03-01 16:30:00", "2026-02-30T00:00:00Z", "9999-12-31T23:00:00-12:00", "0001-01-01T00:00:00+14:00"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)
