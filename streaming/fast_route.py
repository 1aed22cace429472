"""Routing a whole poll of one partition at once: the loader's vectorised fast path.

:func:`route_batch` gives the same bronze table and the same quarantine rows as calling
``streaming.loader.route`` on each message and ``bronze.rows_table`` on the bronze rows, in
offset order, but validates the common case with pyarrow: the values are parsed by
``pyarrow.json.read_json`` against an explicit schema, and the contract's rules are checked
column by column with ``pyarrow.compute``.

The fast path only ever *accepts*. A message it cannot prove valid, for any reason, is given
to ``route`` (the contract's one implementation), which judges it exactly as before; so a
rejection, its error class and its message never come from here. The checks below are a
strict subset of ``core.contract.check_event``: everything they accept the contract accepts
with the same field values; much of what they send on (timestamps on 29 February, before the
year 1000, offsets like ``+00:60``, any escape sequence, unknown fields) the contract may
accept too, on the slow path.

Identity links (about 1 % of the traffic) always take the slow path.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from core.contract import (
    CHANNELS,
    EVENT_FIELDS,
    EVENT_TYPES,
    IDENTITY_TOPIC,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    PLATFORMS,
    SCHEMA_VERSION,
    TOPIC_PLATFORM,
)
from core.layout import BRONZE_EVENTS, bronze_table_for
from streaming import bronze

# The contract's fields as the JSON reader must find them: a field of another JSON type, or a
# field given twice, makes the reader fail (then the messages are judged one by one). Other
# fields become columns of their own; a message that names one takes the slow path (see
# _vetted), so an accepted message has no `extra`.
_EVENT_JSON_SCHEMA = pa.schema(bronze.BRONZE_EVENTS_SCHEMA.field(name) for name in EVENT_FIELDS)
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_EVENT_JSON_SCHEMA, unexpected_field_behavior="infer")
# The loader is one thread among other work: no reader threads of its own.
_READ_OPTIONS = pj.ReadOptions(use_threads=False, block_size=4 * 1024 * 1024)

# A strict subset of core.contract.RFC3339_PATTERN that parse_rfc3339 always accepts: ASCII
# digits only (RE2's \d is ASCII anyway, Python's is not), month 01-12, a day every month has
# (29 February, needing the year, is left to the slow path), hour 00-23, minute and second
# 00-59, an offset under 24 hours with minutes 00-59, and years 1000-9998, so that no offset
# can move the UTC instant out of the years 1-9999.
_SAFE_RFC3339 = (
    r"^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Bytes a value may not contain to be parsed in bulk: the line separator of the bulk text,
# other control bytes (JSON allows some between tokens; the reader's idea of lines might
# differ), and the backslash: escapes are where JSON decoders disagree (lone surrogates,
# escaped key names), and they are rare in real traffic. (These patterns run on the raw bytes;
# RE2 reads them as UTF-8, which holds for every value that reaches the reader: the UTF-8
# check comes after the patterns and before the reader.)
_BULK_UNSAFE = r"[\x00-\x1f\\]"
# Not one flat JSON object: empty, not starting with "{" or not ending with "}", or with a
# "{" or "[" after the first byte. Only flat objects reach the reader: it recurses into
# nested values and crashes the process (stack overflow) on a few thousand levels of them,
# where route() answers InvalidJson. (A newline is _BULK_UNSAFE, so "." covers every other
# character.)
_NOT_ONE_FLAT_OBJECT = r"^$|^[^{]|[^}]$|.[{\[]"
# Kafka timestamps (ms) below this convert to microseconds exactly as
# datetime.fromtimestamp(ms / 1000) does (the float's error stays under half a microsecond
# up to 2**32 s, the year 2106); later ones are routed one by one.
_EXACT_TIMESTAMP_MS = 2**32 * 1000
# Signs, in a value without backslashes (so no string holds a quote), that the bulk parse
# would refuse it: a string field whose value is neither a string nor null, or a
# schema_version other than a plain 1. They are only for speed: one refused message makes the
# reader fail a whole piece, which is then split and parsed again; the reader itself still
# refuses every such message, and a message wrongly thought suspicious merely takes the slow
# path. (Duplicate keys are left to the reader.)
_STRING_FIELDS = "|".join(name for name in EVENT_FIELDS if name != "schema_version")
_SUSPICIOUS = (
    _BULK_UNSAFE
    + rf'|"({_STRING_FIELDS})"\s*:\s*[^"n\s]'
    + r'|"schema_version"\s*:\s*([^1\s]|1[^,}\s])'
)
_NOT_FOR_BULK = f"{_NOT_ONE_FLAT_OBJECT}|{_SUSPICIOUS}"
# The JSON reader's errors name the row of their block: "... in row 17".
_ERROR_ROW = re.compile(r" in row (\d+)$")
# Re-parsing a refused poll stops after this many attempts, or once the pieces tried hold
# this many times the poll's candidates (see _parse_pieces).
_PARSE_BUDGET = 3
_MAX_ATTEMPTS = 8
# Each bulk step costs a fixed ~0.2-1 ms (reader set-up, regex compilation, some 60 compute
# calls) whatever the number of messages; below this many, route() one by one is cheaper.
_MIN_BULK = 128
_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass
class RoutedBatch:
    """One partition's poll, routed: the bronze rows as a table and the quarantine rows."""

    bronze: pa.Table
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def route_batch(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    timestamps_ms: Sequence[int | None],
    ingest_time: datetime,
) -> RoutedBatch:
    """Route the messages of one partition (in offset order) as ``route`` would, one by one.

    Returns the bronze table (``bronze.SCHEMAS`` of the topic's table, rows in the order given)
    and the quarantine rows (dicts as ``route`` builds them, in the order given).
    """
    from streaming.loader import route  # the loader imports this module; route() lives there

    platform = TOPIC_PLATFORM.get(topic)
    accepted, fields = _vetted(platform, values, timestamps_ms) if platform is not None else ([], None)
    fast_at = set(accepted)
    slow_rows: list[dict[str, Any]] = []
    slow_at: list[int] = []
    quarantined: list[dict[str, Any]] = []
    for i, offset in enumerate(offsets):
        if i in fast_at:
            continue
        routed = route(topic, partition, offset, keys[i], values[i], timestamps_ms[i], ingest_time)
        if routed.rejection is None:
            slow_rows.append(routed.row)
            slow_at.append(i)
        else:
            quarantined.append(routed.row)
    slow = bronze.rows_table(slow_rows, bronze.SCHEMAS[bronze_table_for(topic, IDENTITY_TOPIC)])
    if not accepted:
        return RoutedBatch(slow, quarantined)
    fast = _fast_table(topic, partition, offsets, keys, timestamps_ms, ingest_time, accepted, fields)
    if not slow_rows:
        return RoutedBatch(fast, quarantined)
    # Both paths accepted rows: put them back in the order the messages came.
    positions = pa.array(accepted + slow_at, pa.int64())
    merged = pa.concat_tables([fast, slow])
    return RoutedBatch(merged.take(pc.sort_indices(positions)), quarantined)


# --------------------------------------------------------------------------------------------
# The fast path
# --------------------------------------------------------------------------------------------
def _vetted(platform: str, values: Sequence[bytes | None], timestamps_ms: Sequence[int | None]) -> tuple[list[int], pa.Table | None]:
    """The messages the fast path accepts: their indices (ascending) and their parsed fields."""
    if len(values) < _MIN_BULK:
        return [], None
    raw = pa.array(values, pa.binary())  # tombstones are nulls
    stamps = pa.array(timestamps_ms, pa.int64())
    # Tombstones, oversized values and anything that is not one flat JSON object on its own go
    # to route(), which names their error; so do objects holding objects (unknown fields, such
    # as a client description, on which the bulk parse would fail), suspicious values, and
    # Kafka timestamps too late to convert exactly in bulk.
    bulk = pc.and_(
        pc.and_(
            pc.less_equal(pc.binary_length(raw), MAX_MESSAGE_BYTES),
            pc.invert(pc.match_substring_regex(raw, _NOT_FOR_BULK)),
        ),
        pc.or_(pc.is_null(stamps), pc.less(stamps, _EXACT_TIMESTAMP_MS)),
    )
    candidates = pc.indices_nonzero(pc.fill_null(bulk, False)).to_pylist()
    if not candidates:
        return [], None
    # Cheap whole-poll check first; only when it fails are messages looked at one by one.
    if not b"".join(values[i] for i in candidates).isascii():
        candidates = [i for i in candidates if values[i].isascii() or _is_utf8(values[i])]
    pieces = _parse_pieces(candidates, values)
    if not pieces:
        return [], None
    # Pieces come back in message order, so the accepted indices stay ascending.
    parsed_at = [i for piece, _ in pieces for i in piece]
    unknown = sorted({name for _, table in pieces for name in table.column_names} - set(EVENT_FIELDS))
    parsed = pa.concat_tables([table.select(EVENT_FIELDS) for _, table in pieces])
    valid = _contract_holds(parsed, platform)
    if unknown:
        # A field outside the contract that is null (or absent) in every row of its piece
        # reads as null: whether a message named it is told by its text, which spells every
        # key as it is (no backslashes). A message naming one goes to route(), for `extra`.
        # One pattern for them all (a message may hold thousands); \Q..\E quotes each name,
        # which holds no backslash.
        names = "|".join(rf"\Q{name}\E" for name in unknown)
        named = pc.match_substring_regex(raw.take(pa.array(parsed_at, pa.int64())), f'"({names})"')
        valid = pc.and_(valid, pc.invert(named))
    accepted = [parsed_at[j] for j in pc.indices_nonzero(valid).to_pylist()]
    if not accepted:
        return [], None
    return accepted, parsed.filter(valid)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_pieces(candidates: list[int], values: Sequence[bytes | None]) -> list[tuple[list[int], pa.Table]]:
    """Parse the candidates' values in bulk; split a piece the reader refuses.

    A piece counts as parsed only when it gave exactly one row per message: two objects on one
    line (``{...}{...}``, invalid JSON) would otherwise shift every row after them. Pieces come
    back in message order. After ``_MAX_ATTEMPTS`` attempts, or once the pieces tried hold
    ``_PARSE_BUDGET`` times as many messages as there are candidates, the pieces left go to
    route(): a poll full of messages the reader refuses costs a bounded amount more than
    route() alone.
    """
    out: list[tuple[list[int], pa.Table]] = []
    pending = [candidates]
    budget = _PARSE_BUDGET * len(candidates)
    attempts = 0
    while pending and budget > 0 and attempts < _MAX_ATTEMPTS:
        piece = pending.pop()
        budget -= len(piece)
        attempts += 1
        try:
            parsed = pj.read_json(
                io.BytesIO(b"\n".join(values[i] for i in piece)),
                read_options=_READ_OPTIONS,
                parse_options=_PARSE_OPTIONS,
            )
        except (pa.ArrowException, UnicodeDecodeError) as exc:  # whatever the reason: route() judges
            parsed = None
            error = str(exc)
        else:
            error = ""
        if parsed is not None and parsed.num_rows == len(piece):
            out.append((piece, parsed))
        elif len(piece) > 1:
            pending.extend(reversed(_split(piece, error)))
    return out


def _split(piece: list[int], error: str) -> list[list[int]]:
    """``piece`` cut into parts that leave out the row the reader's error names, if it does.

    The rows before the named one probably parse; the rest is halved, so that many refused
    messages cost a number of attempts logarithmic, not linear, in the piece's size. The row
    number is only a hint (it counts within the reader's block): every part is parsed again,
    so a wrong hint costs time, never correctness.
    """
    hint = _ERROR_ROW.search(error)
    row = int(hint.group(1)) if hint else -1
    if 0 <= row < len(piece):
        rest = piece[row + 1 :]  # the row itself goes to route()
        parts = [piece[:row], rest[: len(rest) // 2], rest[len(rest) // 2 :]]
    else:
        parts = [piece[: len(piece) // 2], piece[len(piece) // 2 :]]
    return [part for part in parts if part]


def _id(column: pa.ChunkedArray, *, required: bool) -> pa.ChunkedArray:
    """A string of 1..MAX_ID_CHARS characters, or absent when not required (nulls: False)."""
    length = pc.utf8_length(column)
    present = pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, MAX_ID_CHARS))
    if required:
        return pc.fill_null(present, False)
    return pc.or_kleene(pc.is_null(column), present)


def _one_of(column: pa.ChunkedArray, allowed: tuple[str, ...], *, absent_ok: pa.ChunkedArray | bool) -> pa.ChunkedArray:
    """A value of ``allowed``, or absent where ``absent_ok`` holds."""
    member = pc.is_in(column, value_set=pa.array(allowed, pa.string()))
    member = pc.and_(pc.is_valid(column), pc.fill_null(member, False))
    return pc.or_(member, pc.and_(pc.is_null(column), absent_ok))


def _contract_holds(parsed: pa.Table, platform: str) -> pa.ChunkedArray:
    """Per row, whether check_event certainly accepts it (False is "not sure", not "invalid")."""
    col = parsed.column
    event_type = col("event_type")
    is_like_or_share = pc.fill_null(pc.is_in(event_type, value_set=pa.array(["like", "share"])), False)
    is_join = pc.fill_null(pc.equal(event_type, "join"), False)
    is_share = pc.fill_null(pc.equal(event_type, "share"), False)
    event_time = col("event_time")
    time_ok = pc.and_(
        pc.fill_null(pc.less_equal(pc.utf8_length(event_time), 64), False),
        pc.fill_null(pc.match_substring_regex(event_time, _SAFE_RFC3339), False),
    )
    checks = [
        pc.fill_null(pc.equal(col("schema_version"), SCHEMA_VERSION), False),
        _id(col("event_id"), required=True),
        _one_of(event_type, EVENT_TYPES, absent_ok=False),
        pc.fill_null(pc.equal(col("platform"), platform), False),
        _id(col("user_id"), required=True),
        time_ok,
        pc.if_else(is_like_or_share, _id(col("content_id"), required=True), _id(col("content_id"), required=False)),
        pc.if_else(is_join, _id(col("group_id"), required=True), _id(col("group_id"), required=False)),
        _one_of(col("channel"), CHANNELS, absent_ok=pc.invert(is_join)),
        _id(col("inviter_user_id"), required=False),
        _one_of(col("target_platform"), PLATFORMS, absent_ok=pc.invert(is_share)),
    ]
    valid = checks[0]
    for check in checks[1:]:
        valid = pc.and_(valid, check)
    # Every check above yields False, never null, for a missing value; make sure of it.
    return pc.fill_null(valid, False)


def _fast_table(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    keys: Sequence[bytes | None],
    timestamps_ms: Sequence[int | None],
    ingest_time: datetime,
    at: list[int],
    fields: pa.Table,
) -> pa.Table:
    """The bronze rows of the accepted messages ``at``, built as route() builds them."""
    n = len(at)
    taken = pa.array(at, pa.int64())
    binary_keys = pa.array(keys, pa.binary()).take(taken)
    try:
        kafka_keys = binary_keys.cast(pa.string())  # checks UTF-8: the keys decode as they are
    except pa.ArrowInvalid:
        kafka_keys = pa.array(
            [keys[i].decode("utf-8", errors="replace") if keys[i] is not None else None for i in at], pa.string()
        )
    # route(): no timestamp, or a negative one (none given), is null; see _EXACT_TIMESTAMP_MS.
    stamps = pa.array(timestamps_ms, pa.int64()).take(taken)
    stamps = pc.if_else(pc.less(stamps, 0), pa.scalar(None, pa.int64()), pc.multiply(stamps, 1000))
    columns = {name: fields.column(name) for name in EVENT_FIELDS}
    columns.update(
        extra=pa.nulls(n, pa.string()),
        kafka_topic=pa.repeat(pa.scalar(topic, pa.string()), n),
        kafka_partition=pa.repeat(pa.scalar(partition, pa.int32()), n),
        kafka_offset=pa.array(offsets, pa.int64()).take(taken),
        kafka_key=kafka_keys,
        kafka_timestamp=stamps.cast(_TIMESTAMP),
        ingest_time=pa.repeat(pa.scalar(ingest_time, _TIMESTAMP), n),
    )
    schema = bronze.SCHEMAS[BRONZE_EVENTS]
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
