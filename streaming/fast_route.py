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

# The contract's fields as the JSON reader must find them: any other field, a field of
# another JSON type, or a field given twice makes the reader fail (then the messages are
# judged one by one), so an accepted message has no `extra`.
_EVENT_JSON_SCHEMA = pa.schema(bronze.BRONZE_EVENTS_SCHEMA.field(name) for name in EVENT_FIELDS)
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_EVENT_JSON_SCHEMA, unexpected_field_behavior="error")
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
# escaped key names), and they are rare in real traffic.
_BULK_UNSAFE = re.compile(rb"[\x00-\x1f\\]")
# Kafka timestamps (ms) below this convert to microseconds exactly as
# datetime.fromtimestamp(ms / 1000) does (the float's error stays under half a microsecond
# up to 2**32 s, the year 2106); later ones are routed one by one.
_EXACT_TIMESTAMP_MS = 2**32 * 1000
# A failed bulk parse is split in halves until this size; a failing piece this small is
# judged one message at a time.
_SMALLEST_BULK = 16
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
    candidates = [i for i, value in enumerate(values) if _bulk_parseable(value) and _exact_timestamp(timestamps_ms[i])]
    if not candidates:
        return [], None
    text = b"\n".join(values[i] for i in candidates)
    # Cheap whole-batch checks first; only when they fail are messages looked at one by one.
    if _BULK_UNSAFE.search(text) is not None:
        candidates = [i for i in candidates if _BULK_UNSAFE.search(values[i]) is None]
    if not text.isascii():
        candidates = [i for i in candidates if _is_utf8(values[i])]
    accepted: list[int] = []
    tables: list[pa.Table] = []
    # Pieces come back in message order, so the accepted indices stay ascending.
    for piece, parsed in _parse_pieces(candidates, values):
        valid = _contract_holds(parsed, platform)
        indices = pc.indices_nonzero(valid).to_pylist()
        if indices:
            accepted.extend(piece[j] for j in indices)
            tables.append(parsed.filter(valid))
    if not accepted:
        return [], None
    return accepted, pa.concat_tables(tables)


def _bulk_parseable(value: bytes | None) -> bool:
    # Tombstones, oversized values and anything that is not one JSON object on its own go to
    # route(), which names their error; so do objects with nested objects (unknown fields,
    # such as a client description, that would make the bulk parse fail).
    return (
        value is not None
        and len(value) <= MAX_MESSAGE_BYTES
        and value[:1] == b"{"
        and value[-1:] == b"}"
        and value.find(b"{", 1) == -1
    )


def _exact_timestamp(timestamp_ms: int | None) -> bool:
    return timestamp_ms is None or timestamp_ms < _EXACT_TIMESTAMP_MS


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_pieces(candidates: list[int], values: Sequence[bytes | None]) -> list[tuple[list[int], pa.Table]]:
    """Parse the candidates' values in bulk; halve a piece the reader refuses, drop small ones.

    A piece counts as parsed only when it gave exactly one row per message: two objects on one
    line (``{...}{...}``, invalid JSON) would otherwise shift every row after them.
    """
    out: list[tuple[list[int], pa.Table]] = []
    pending = [candidates]
    while pending:
        piece = pending.pop()
        try:
            parsed = pj.read_json(
                io.BytesIO(b"\n".join(values[i] for i in piece)),
                read_options=_READ_OPTIONS,
                parse_options=_PARSE_OPTIONS,
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            parsed = None
        if parsed is not None and parsed.num_rows == len(piece):
            out.append((piece, parsed))
        elif len(piece) > _SMALLEST_BULK:
            middle = len(piece) // 2
            pending.extend((piece[middle:], piece[:middle]))
    return out


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
    micros = []
    for i in at:
        ms = timestamps_ms[i]
        # route(): a negative timestamp (none given) is null; see _EXACT_TIMESTAMP_MS.
        micros.append(ms * 1000 if ms is not None and ms >= 0 else None)
    columns = {name: fields.column(name) for name in EVENT_FIELDS}
    columns.update(
        extra=pa.nulls(n, pa.string()),
        kafka_topic=pa.array([topic] * n, pa.string()),
        kafka_partition=pa.array([partition] * n, pa.int32()),
        kafka_offset=pa.array([offsets[i] for i in at], pa.int64()),
        kafka_key=pa.array(
            [keys[i].decode("utf-8", errors="replace") if keys[i] is not None else None for i in at], pa.string()
        ),
        kafka_timestamp=pa.array(micros, pa.int64()).cast(_TIMESTAMP),
        ingest_time=pa.array([ingest_time] * n, _TIMESTAMP),
    )
    schema = bronze.SCHEMAS[BRONZE_EVENTS]
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
