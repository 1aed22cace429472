"""The loader's batch routing (``streaming.fast_route.route_batch``) against routing one by one.

The reference is what the loader did before the fast path: ``route`` per message, then
``bronze.rows_table`` over the bronze rows. Both must give equal bronze tables (same schema,
values and row order) and equal quarantine rows, on generated traffic, on hand-written nasty
messages (each with the outcome written out by hand) and on random mutations of valid events.
"""

from __future__ import annotations

import json
import random
import re
from datetime import date, datetime, timezone

import pyarrow as pa
import pytest

from core import contract
from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, WECHAT_TOPIC, parse_rfc3339
from core.layout import bronze_table_for
from streaming import bronze, fast_route
from streaming.fast_route import _SAFE_RFC3339, route_batch
from streaming.generator import GeneratorConfig, generate
from streaming.loader import route

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
PARTITION = 4
LIKE = {
    "event_id": "e-1",
    "schema_version": 1,
    "event_type": "like",
    "platform": "kuaishou",
    "user_id": "ks-1",
    "event_time": "2026-03-01T20:15:03.250+08:00",
    "content_id": "video-9",
    "group_id": None,
    "channel": None,
    "inviter_user_id": None,
    "target_platform": None,
}
JOIN = {**LIKE, "event_type": "join", "content_id": None, "group_id": "g-1", "channel": "invite", "inviter_user_id": "ks-2"}
SHARE = {**LIKE, "event_type": "share", "target_platform": "wechat"}


@pytest.fixture(autouse=True)
def bulk_even_for_one_message(monkeypatch):
    """The fast path leaves polls of fewer than 128 messages to route(); here it takes them too,
    so that a single nasty message meets the bulk checks."""
    monkeypatch.setattr(fast_route, "_MIN_BULK", 1)


def _wire(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _like(**changes) -> bytes:
    return _wire({**LIKE, **changes})


def _one_by_one(topic, offsets, keys, values, timestamps):
    """The loader's routing before the fast path: route() per message, then rows_table."""
    rows, quarantined = [], []
    for offset, key, value, ts in zip(offsets, keys, values, timestamps):
        routed = route(topic, PARTITION, offset, key, value, ts, NOW)
        (quarantined if routed.rejection else rows).append(routed.row)
    return bronze.rows_table(rows, bronze.SCHEMAS[bronze_table_for(topic, IDENTITY_TOPIC)]), quarantined


def _assert_same_as_one_by_one(topic, values, *, keys=None, timestamps=None, first_offset=100):
    offsets = list(range(first_offset, first_offset + len(values)))
    keys = keys if keys is not None else [b"k-%d" % i for i in range(len(values))]
    timestamps = timestamps if timestamps is not None else [1_772_367_303_250 + i for i in range(len(values))]
    expected_table, expected_quarantine = _one_by_one(topic, offsets, keys, values, timestamps)
    batch = route_batch(topic, PARTITION, offsets, keys, values, timestamps, NOW)
    assert batch.bronze.schema.equals(expected_table.schema, check_metadata=True)
    if not batch.bronze.equals(expected_table):
        got, want = batch.bronze.to_pylist(), expected_table.to_pylist()
        diff = next((i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w) if len(got) == len(want) else (len(got), len(want))
        pytest.fail(f"bronze tables differ: {diff}")
    assert batch.quarantined == expected_quarantine
    return batch


# --------------------------------------------------------------------------------------------
# Generated traffic
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traffic():
    config = GeneratorConfig(
        start_date=date(2026, 3, 1), days=2, kuaishou_users=1_500, wechat_users=600, invalid_rate=0.05, duplicate_rate=0.02
    )
    by_topic: dict[str, list] = {}
    for message in generate(config):
        by_topic.setdefault(message.topic, []).append(message)
    return by_topic


def test_generated_traffic_routes_the_same_in_polls_of_any_size(traffic):
    assert sum(len(m) for m in traffic.values()) > 5_000
    for topic, messages in traffic.items():
        # Poll sizes as the consumer returns them: up to 2000, often fewer.
        start = 0
        for size in (1, 7, 2000, 333, 2000, 2000, 2000, 2000):
            chunk = messages[start : start + size]
            if not chunk:
                break
            _assert_same_as_one_by_one(topic, [m.value for m in chunk], keys=[m.key for m in chunk], first_offset=start)
            start += size


def test_generated_traffic_mostly_takes_the_fast_path(traffic):
    # Not a correctness property, but the point of the module: valid plain events are not
    # handed to route() one by one.
    messages = traffic[KUAISHOU_TOPIC][:2000]
    accepted, _ = fast_route._vetted("kuaishou", [m.value for m in messages], [0] * len(messages))
    valid = sum(m.valid for m in messages)
    assert len(accepted) >= 0.85 * valid


# --------------------------------------------------------------------------------------------
# Nasty messages, each with its outcome written by hand (None: lands in bronze)
# --------------------------------------------------------------------------------------------
_DEEP = b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
_PAD = 64 * 1024 - len(_like(pad=""))
NASTY: list[tuple[str, bytes | None, str | None]] = [
    ("plain like", _like(), None),
    ("plain join", _wire(JOIN), None),
    ("plain share", _wire(SHARE), None),
    ("optional fields absent", _wire({k: v for k, v in LIKE.items() if v is not None}), None),
    ("spaces between tokens", json.dumps(LIKE).encode(), None),
    ("leading whitespace", b"  " + _like(), None),
    ("newline between tokens", _like().replace(b',"user_id"', b',\n"user_id"'), None),
    ("tab between tokens", _like().replace(b',"user_id"', b',\t"user_id"'), None),
    ("raw newline inside a string", _like(user_id="a\nb").replace(b"\\n", b"\n"), contract.BAD_JSON),
    ("raw control byte inside a string", _like(user_id="a\x01b").replace(b"\\u0001", b"\x01"), contract.BAD_JSON),
    ("raw NUL byte inside a string", _like(user_id="a\x00b").replace(b"\\u0000", b"\x00"), contract.BAD_JSON),
    ("raw unit separator inside a string", _like(user_id="a\x1fb").replace(b"\\u001f", b"\x1f"), contract.BAD_JSON),
    ("raw DEL inside a string", _like(user_id="a\x7fb"), None),
    ("escaped newline inside a string", _like(user_id="a\nb"), None),
    ("escaped e-acute", _like().replace(b'"ks-1"', b'"\\u00e9"'), None),
    ("escaped NUL", _like(user_id="a\x00b"), None),
    ("escaped quote", _like(user_id='a"b'), None),
    ("not UTF-8", _like().replace(b'"ks-1"', b'"\xff\xfe"'), contract.BAD_ENCODING),
    ("UTF-8 encoded surrogate", _like().replace(b'"ks-1"', b'"\xed\xa0\x80"'), contract.BAD_ENCODING),
    ("BOM", b"\xef\xbb\xbf" + _like(), contract.BAD_JSON),
    ("truncated", _like()[:-3], contract.BAD_JSON),
    ("two objects on one line", _like() + _like(), contract.BAD_JSON),
    ("two objects separated by a space", _like() + b" " + _like(), contract.BAD_JSON),
    ("trailing comma", _like()[:-1] + b",}", contract.BAD_JSON),
    ("single quotes", b"{'event_id':'e'}", contract.BAD_JSON),
    # pyarrow 26's JSON reader overflows its stack (SIGSEGV) on this: it must never see it.
    ("deeply nested array", _DEEP, contract.BAD_JSON),
    ("deeply nested array in a known field", b'{"user_id":' + b"[" * 30_000 + b"]" * 30_000 + b"}", contract.BAD_JSON),
    ("deeply nested array after a space", b'{"x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", contract.BAD_JSON),
    ("array of strings in an unknown field", _like(tags=["a", "b"]), None),
    ("empty value", b"", contract.BAD_JSON),
    ("JSON array", b"[" + _like() + b"]", contract.NOT_OBJECT),
    ("JSON string", b'"e-1"', contract.NOT_OBJECT),
    ("JSON number", b"42", contract.NOT_OBJECT),
    ("JSON null", b"null", contract.NOT_OBJECT),
    ("tombstone", None, contract.NOT_OBJECT),
    ("empty object", b"{}", contract.MISSING_FIELD),
    ("exactly 64 KiB", _like(pad="x" * _PAD), None),
    ("one byte over 64 KiB", _like(pad="x" * (_PAD + 1)), contract.TOO_LARGE),
    ("duplicate key, last wins", _like()[:-1] + b',"event_id":"e-last"}', None),
    ("duplicate key, last invalid", _like()[:-1] + b',"user_id":""}', contract.BAD_VALUE),
    ("duplicate key, first invalid", _like(user_id="").replace(b'"user_id":""', b'"user_id":"","user_id":"ks-9"'), None),
    ("duplicate key, last wrong type", _like()[:-1] + b',"schema_version":"1"}', contract.WRONG_TYPE),
    ("schema_version 1.0", _like().replace(b'"schema_version":1', b'"schema_version":1.0'), contract.WRONG_TYPE),
    ("schema_version 1e0", _like().replace(b'"schema_version":1', b'"schema_version":1e0'), contract.WRONG_TYPE),
    ("schema_version true", _like(schema_version=True), contract.WRONG_TYPE),
    ("schema_version string", _like(schema_version="1"), contract.WRONG_TYPE),
    ("schema_version NaN", _like().replace(b'"schema_version":1', b'"schema_version":NaN'), contract.WRONG_TYPE),
    ("schema_version huge", _like(schema_version=10**30), contract.BAD_VALUE),
    ("schema_version -0", _like().replace(b'"schema_version":1', b'"schema_version":-0'), contract.BAD_VALUE),
    ("schema_version 2", _like(schema_version=2), contract.BAD_VALUE),
    ("schema_version null", _like(schema_version=None), contract.MISSING_FIELD),
    ("event_id null", _like(event_id=None), contract.MISSING_FIELD),
    ("event_id number", _like(event_id=7), contract.WRONG_TYPE),
    ("event_id object", _like(event_id={"a": 1}), contract.WRONG_TYPE),
    ("event_id list", _like(event_id=["e"]), contract.WRONG_TYPE),
    ("user_id true", _like(user_id=True), contract.WRONG_TYPE),
    ("user_id empty", _like(user_id=""), contract.BAD_VALUE),
    ("user_id 128 chars", _like(user_id="u" * 128), None),
    ("user_id 129 chars", _like(user_id="u" * 129), contract.BAD_VALUE),
    ("user_id 128 two-byte chars", _like(user_id="é" * 128), None),
    ("user_id 129 two-byte chars", _like(user_id="é" * 129), contract.BAD_VALUE),
    ("user_id 128 astral chars", _like(user_id="😀" * 128), None),
    ("user_id 129 astral chars", _like(user_id="😀" * 129), contract.BAD_VALUE),
    ("unknown string field", _like(zz="x"), None),
    ("unknown null field", _like(zz=None), None),
    ("unknown nested field", _like(client={"os": "ios", "v": [1, 2]}), None),
    ("unknown fields with regex characters", _like(**{"a.b": 1, "(x|y)*": None, "^$": "z"}), None),
    ("many unknown fields", _like(**{f"f{i}": None for i in range(3000)}), None),
    ("event_type comment", _like(event_type="comment"), contract.BAD_VALUE),
    ("event_type missing", _wire({k: v for k, v in LIKE.items() if k != "event_type"}), contract.MISSING_FIELD),
    ("event_type upper case", _like(event_type="LIKE"), contract.BAD_VALUE),
    ("platform douyin", _like(platform="douyin"), contract.BAD_VALUE),
    ("platform of the other topic", _like(platform="wechat"), contract.TOPIC_MISMATCH),
    ("like without content_id", _like(content_id=None), contract.MISSING_FIELD),
    ("join without group_id", _wire({**JOIN, "group_id": None}), contract.MISSING_FIELD),
    ("join without channel", _wire({**JOIN, "channel": None}), contract.MISSING_FIELD),
    ("join with channel billboard", _wire({**JOIN, "channel": "billboard"}), contract.BAD_VALUE),
    ("like with a channel", _like(channel="invite"), None),
    ("like with channel billboard", _like(channel="billboard"), contract.BAD_VALUE),
    ("share without target_platform", _wire({**SHARE, "target_platform": None}), contract.MISSING_FIELD),
    ("share to weibo", _wire({**SHARE, "target_platform": "weibo"}), contract.BAD_VALUE),
    ("like with target_platform", _like(target_platform="wechat"), None),
    ("inviter_user_id empty", _like(inviter_user_id=""), contract.BAD_VALUE),
    ("event_time without offset", _like(event_time="2026-03-01T20:15:03"), contract.BAD_VALUE),
    ("event_time number", _like(event_time=1772367303), contract.WRONG_TYPE),
    ("event_time lower case t and z", _like(event_time="2026-03-01t20:15:03z"), None),
    ("event_time month 13", _like(event_time="2026-13-01T00:00:00Z"), contract.BAD_VALUE),
    ("event_time month 00", _like(event_time="2026-00-01T00:00:00Z"), contract.BAD_VALUE),
    ("event_time hour 24", _like(event_time="2026-03-01T24:00:00Z"), contract.BAD_VALUE),
    ("event_time second 60", _like(event_time="2026-03-01T23:59:60Z"), contract.BAD_VALUE),
    ("event_time 30 February", _like(event_time="2028-02-30T00:00:00Z"), contract.BAD_VALUE),
    ("event_time 29 February, leap year", _like(event_time="2028-02-29T00:00:00Z"), None),
    ("event_time 29 February, common year", _like(event_time="2026-02-29T00:00:00Z"), contract.BAD_VALUE),
    ("event_time 31 April", _like(event_time="2026-04-31T00:00:00Z"), contract.BAD_VALUE),
    ("event_time offset +24:00", _like(event_time="2026-03-01T00:00:00+24:00"), contract.BAD_VALUE),
    ("event_time offset +23:59", _like(event_time="2026-03-01T00:00:00+23:59"), None),
    # parse_rfc3339 (Python's fromisoformat) reads +00:60 as one hour: the contract accepts it.
    ("event_time offset +00:60", _like(event_time="2026-03-01T00:00:00+00:60"), None),
    ("event_time offset -00:00", _like(event_time="2026-03-01T00:00:00-00:00"), None),
    ("event_time year 0", _like(event_time="0000-03-01T00:00:00Z"), contract.BAD_VALUE),
    ("event_time year 999", _like(event_time="0999-03-01T00:00:00Z"), None),
    ("event_time year 9999", _like(event_time="9999-12-31T23:59:59Z"), None),
    ("event_time after 9999 in UTC", _like(event_time="9999-12-31T23:00:00-12:00"), contract.BAD_VALUE),
    ("event_time before year 1 in UTC", _like(event_time="0001-01-01T00:00:00+14:00"), contract.BAD_VALUE),
    ("event_time fullwidth digits", _like(event_time="２０２６-03-01T20:15:03Z"), contract.BAD_VALUE),
    ("event_time Arabic-Indic digits", _like(event_time="٢٠٢٦-03-01T20:15:03Z"), contract.BAD_VALUE),
    ("event_time 64 chars", _like(event_time="2026-03-01T20:15:03." + "1" * 43 + "Z"), None),
    ("event_time 65 chars", _like(event_time="2026-03-01T20:15:03." + "1" * 44 + "Z"), contract.BAD_VALUE),
    ("event_time trailing space", _like(event_time="2026-03-01T20:15:03Z "), contract.BAD_VALUE),
]


@pytest.mark.parametrize(("name", "value", "error_class"), NASTY, ids=[n for n, _, _ in NASTY])
def test_each_nasty_message_has_its_hand_written_outcome(name, value, error_class):
    batch = route_batch(KUAISHOU_TOPIC, PARTITION, [5], [b"k"], [value], [1_772_367_303_250], NOW)
    if error_class is None:
        assert batch.bronze.num_rows == 1 and batch.quarantined == []
        assert batch.bronze.column("kafka_offset").to_pylist() == [5]
    else:
        assert batch.bronze.num_rows == 0
        assert [row["error_class"] for row in batch.quarantined] == [error_class]
        assert batch.quarantined[0]["value"] == value and batch.quarantined[0]["kafka_offset"] == 5


def test_nasty_messages_among_valid_ones_route_the_same_as_one_by_one():
    values = []
    for _, value, _ in NASTY:
        values += [_like(event_id=f"v-{len(values)}"), value]
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values)
    assert batch.bronze.num_rows == len(NASTY) + sum(error is None for _, _, error in NASTY)


def test_fields_of_the_hand_written_nasty_messages():
    values = [
        _like()[:-1] + b',"event_id":"e-last"}',  # duplicate key: Python's json keeps the last
        _like(zz=None, client={"os": "ios"}),
        _like().replace(b'"ks-1"', b'"\\u00e9"'),
        _like(user_id="😀" * 128),
    ]
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values, keys=[b"\xffk", None, b"k", b"k"])
    rows = batch.bronze.to_pylist()
    assert rows[0]["event_id"] == "e-last" and rows[0]["extra"] is None
    assert rows[0]["kafka_key"] == "\ufffdk"
    assert rows[1]["extra"] == '{"client": {"os": "ios"}, "zz": null}'
    assert rows[1]["kafka_key"] is None
    assert rows[2]["user_id"] == "é"
    assert rows[3]["user_id"] == "😀" * 128
    assert [r["kafka_offset"] for r in rows] == [100, 101, 102, 103]


def test_rows_from_both_paths_keep_offset_order():
    slow_valid = _like(zz="x")  # an unknown field: accepted by route(), not by the bulk parse
    values = [_like(event_id="a"), slow_valid, b"oops", _like(event_id="b"), slow_valid, _like(event_id="c")]
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values, first_offset=10)
    assert batch.bronze.column("kafka_offset").to_pylist() == [10, 11, 13, 14, 15]
    assert batch.bronze.column("extra").to_pylist() == [None, '{"zz": "x"}', None, '{"zz": "x"}', None]
    assert [row["kafka_offset"] for row in batch.quarantined] == [12]


def test_kafka_timestamps_and_keys_as_route_gives_them():
    ts = [None, -1, 0, 1, 999, 1_772_367_303_251, 2**32 * 1000 - 1, 2**32 * 1000, 2**33 * 1000 + 7, 253_402_300_799_999]
    ts += [random.Random(3).randrange(0, 2**32 * 1000) for _ in range(500)]
    values = [_like(event_id=f"e-{i}") for i in range(len(ts))]
    keys = [None, b"", b"\xff", b"\xe4\xbd\xa0", b"a\x00b", *([b"k"] * (len(ts) - 5))]
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values, keys=keys, timestamps=ts)
    stamps = batch.bronze.column("kafka_timestamp").to_pylist()
    assert stamps[:3] == [None, None, datetime(1970, 1, 1, tzinfo=timezone.utc)]
    assert stamps[5] == datetime(2026, 3, 1, 12, 15, 3, 251000, tzinfo=timezone.utc)
    assert batch.bronze.column("kafka_key").to_pylist()[:5] == [None, "", "\ufffd", "你", "a\x00b"]


def test_identity_links_and_other_topics():
    link = {"link_id": "l", "kuaishou_user_id": "k", "wechat_openid": "o", "linked_at": "2026-03-01T00:00:00Z"}
    values = [_wire(link), _wire({**link, "wechat_openid": None}), b"{", _wire({**link, "x": 1})]
    batch = _assert_same_as_one_by_one(IDENTITY_TOPIC, values)
    assert batch.bronze.num_rows == 2
    assert [row["error_class"] for row in batch.quarantined] == [contract.MISSING_FIELD, contract.BAD_JSON]
    # A like on the WeChat topic is a mismatch, a WeChat like is fine.
    batch = _assert_same_as_one_by_one(WECHAT_TOPIC, [_like(), _like(platform="wechat")])
    assert [row["error_class"] for row in batch.quarantined] == [contract.TOPIC_MISMATCH]
    batch = _assert_same_as_one_by_one(contract.DEADLETTER_TOPIC, [_like()])
    assert [row["error_class"] for row in batch.quarantined] == [contract.UNKNOWN_TOPIC]


def test_an_empty_poll():
    batch = route_batch(KUAISHOU_TOPIC, PARTITION, [], [], [], [], NOW)
    assert batch.bronze.num_rows == 0 and batch.bronze.schema.equals(bronze.BRONZE_EVENTS_SCHEMA)
    assert batch.quarantined == []


def test_a_poll_of_only_invalid_messages():
    values = [b"{bad"] * 50 + [_like(user_id="")] * 50
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values)
    assert batch.bronze.num_rows == 0 and len(batch.quarantined) == 100


# --------------------------------------------------------------------------------------------
# Random mutations of valid events
# --------------------------------------------------------------------------------------------
_NASTY_TEXT = ["", "x", "é", "😀", "٣", "２", "\\", '"', "\n", "u" * 129, "invite", "like", "join", "share", "wechat", "kuaishou"]
_NASTY_JSON = [None, 0, 1, -1, 1.0, True, False, [], {}, ["a"], {"a": None}, 10**20, "1"]


def _mutate(rng: random.Random, base: dict) -> bytes:
    event = dict(base)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice([*contract.EVENT_FIELDS, "client"])
        kind = rng.randrange(8)
        if kind == 0:
            event.pop(name, None)
        elif kind == 1:
            event[name] = rng.choice(_NASTY_JSON)
        elif kind == 2:
            event[name] = rng.choice(_NASTY_TEXT)
        elif kind == 3 and isinstance(event.get(name), str):
            text = event[name]
            at = rng.randrange(len(text) + 1)
            event[name] = text[:at] + rng.choice(_NASTY_TEXT) + text[at:]
        elif kind == 4:
            event["event_time"] = _random_timestamp(rng)
        elif kind == 5:
            event[name] = rng.choice(["like", "share", "join", "kuaishou", "wechat", "invite", "other"])
    value = _wire(event) if rng.random() < 0.7 else json.dumps(event).encode()
    if rng.random() < 0.1:
        # A duplicate key, appended: the last one counts.
        name = rng.choice(contract.EVENT_FIELDS)
        value = value[:-1] + b',"' + name.encode() + b'":' + json.dumps(rng.choice(_NASTY_TEXT + ["ks-7"])).encode() + b"}"
    if rng.random() < 0.03:
        value = value[: rng.randrange(len(value))]
    return value


def _random_timestamp(rng: random.Random) -> str:
    def two(low, high):
        return f"{rng.randint(low, high):02d}"

    year = rng.choice(["0000", "0001", "0999", "1000", "2026", "2028", "1900", "2000", "9998", "9999", f"{rng.randint(0, 9999):04d}"])
    fraction = rng.choice(["", "." + "1" * rng.randint(1, 12), "."])
    offset = rng.choice(["Z", "z", "+00:00", "-00:00", "+08:00", f"+{two(0, 25)}:{two(0, 61)}", f"-{two(0, 25)}:{two(0, 61)}", ""])
    sep = rng.choice("TTTt ")
    text = f"{year}-{two(0, 13)}-{two(0, 32)}{sep}{two(0, 25)}:{two(0, 61)}:{two(0, 61)}{fraction}{offset}"
    if rng.random() < 0.05:
        text = text.replace("2", rng.choice(["٢", "２", "2"]))
    return text


def test_random_mutations_route_the_same_as_one_by_one():
    rng = random.Random(20260302)
    for _ in range(8):
        values = []
        for _ in range(600):
            base = rng.choice([LIKE, JOIN, SHARE])
            values.append(_wire(base) if rng.random() < 0.3 else _mutate(rng, base))
        _assert_same_as_one_by_one(KUAISHOU_TOPIC, values)


def test_every_timestamp_the_bulk_pattern_accepts_parses():
    """The fast path's timestamp pattern is a subset of what parse_rfc3339 accepts."""
    rng = random.Random(11)
    safe = re.compile(_SAFE_RFC3339)
    matched = 0
    for _ in range(50_000):
        text = _random_timestamp(rng)
        if safe.match(text):
            matched += 1
            parse_rfc3339(text)  # raises if the pattern let through something invalid
    assert matched > 1_000  # the test sees the pattern accept things, not only refuse them
    for text in ("2026-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "9999-01-01T00:00:00Z", "0999-01-01T00:00:00Z"):
        assert not safe.match(text)  # left to the slow path, which knows the calendar


def test_many_messages_the_bulk_reader_refuses_in_one_poll():
    # Unknown string fields and duplicate keys pass the cheap pre-checks; the reader refuses
    # them, so the poll is split again and again, and what is left when the budget of
    # attempts is spent goes to route().
    rng = random.Random(5)
    values = []
    for i in range(2000):
        r = rng.random()
        if r < 0.15:
            values.append(_like(event_id=f"u-{i}", zz=f"z{i}"))
        elif r < 0.3:
            values.append(_like(event_id=f"d-{i}")[:-1] + b',"user_id":"ks-dup"}')
        else:
            values.append(_like(event_id=f"e-{i}"))
    batch = _assert_same_as_one_by_one(KUAISHOU_TOPIC, values)
    assert batch.bronze.num_rows == 2000 and batch.quarantined == []


def test_bulk_timestamp_conversion_agrees_with_fromtimestamp_below_2_to_the_32_seconds():
    # The fast path converts Kafka timestamps below 2**32 s as ms * 1000 microseconds; route()
    # uses datetime.fromtimestamp(ms / 1000). Check the two agree on many values there.
    rng = random.Random(17)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    samples = [rng.randrange(0, 2**32 * 1000) for _ in range(100_000)] + [2**32 * 1000 - d for d in range(1, 2000)]
    for ms in samples:
        got = datetime.fromtimestamp(ms / 1000, tz=timezone.utc) - epoch
        assert got.days * 86_400_000_000 + got.seconds * 1_000_000 + got.microseconds == ms * 1000, ms


def test_small_polls_go_to_route_one_by_one(monkeypatch):
    monkeypatch.setattr(fast_route, "_MIN_BULK", 128)
    values = [_like(event_id=f"e-{i}") for i in range(127)]
    assert fast_route._vetted("kuaishou", values, [0] * 127) == ([], None)
    accepted, _ = fast_route._vetted("kuaishou", values + [_like()], [0] * 128)
    assert accepted == list(range(128))
    _assert_same_as_one_by_one(KUAISHOU_TOPIC, values)
