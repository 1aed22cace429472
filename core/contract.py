"""The event contract, version 1 (DESIGN section 3): one implementation used everywhere.

:func:`validate` takes the topic and the raw bytes of one Kafka message and returns either the
parsed record or a :class:`Rejection` naming the rule it broke (:func:`check_event` and
:func:`check_identity` judge an already decoded object). They are pure functions of their
arguments, so the loader, the generator's self-checks and the tests share them. The topics
and the platform each carries are part of the contract and live here too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Topics (DESIGN section 3): one per platform for engagement events, one for identity links,
# one for dead letters.
KUAISHOU_TOPIC = "engagement.kuaishou.events"
WECHAT_TOPIC = "engagement.wechat.events"
IDENTITY_TOPIC = "engagement.identity"
DEADLETTER_TOPIC = "engagement.deadletter"
CONTRACT_TOPICS = (KUAISHOU_TOPIC, WECHAT_TOPIC, IDENTITY_TOPIC, DEADLETTER_TOPIC)

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ID_CHARS = 128

EVENT_TYPES = ("like", "share", "join")
PLATFORMS = ("kuaishou", "wechat")
CHANNELS = (
    "invite",
    "qr_code",
    "content",
    "live_stream",
    "official_account",
    "mini_program",
    "search",
    "other",
)
# The platform each event topic carries, and back.
TOPIC_PLATFORM = {KUAISHOU_TOPIC: "kuaishou", WECHAT_TOPIC: "wechat"}
PLATFORM_TOPIC = {platform: topic for topic, platform in TOPIC_PLATFORM.items()}
EVENT_TOPICS = tuple(TOPIC_PLATFORM)

# The fields of an engagement event, in bronze column order.
EVENT_FIELDS = (
    "event_id",
    "schema_version",
    "event_type",
    "platform",
    "user_id",
    "event_time",
    "content_id",
    "group_id",
    "channel",
    "inviter_user_id",
    "target_platform",
)
IDENTITY_FIELDS = ("link_id", "kuaishou_user_id", "wechat_openid", "wechat_unionid", "linked_at")

# RFC 3339 date-time with an explicit offset ("Z" or +hh:mm); fraction of any length. The same
# text is a valid Java regex, so the bronze quality gate checks with exactly this pattern.
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339_PATTERN)

# Error classes, used in dead-letter headers and the quarantine table.
TOO_LARGE = "MessageTooLarge"
BAD_ENCODING = "InvalidUtf8"
BAD_JSON = "InvalidJson"
NOT_OBJECT = "NotAnObject"
MISSING_FIELD = "MissingField"
WRONG_TYPE = "WrongType"
BAD_VALUE = "InvalidValue"
TOPIC_MISMATCH = "PlatformTopicMismatch"
UNKNOWN_TOPIC = "UnknownTopic"


@dataclass(frozen=True)
class Rejection:
    """Why a message broke the contract."""

    error_class: str
    message: str


class ContractError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(error_class, message)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an explicit offset; raise ValueError otherwise."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(f"not RFC 3339 with an explicit offset: {value!r}")
    text = value.replace("z", "Z").replace("t", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, _, rest = text.partition(".")
    if rest:
        # Python parses at most microseconds; keep the first 6 fraction digits.
        digits = re.match(r"\d+", rest).group(0)
        text = f"{head}.{(digits + '000000')[:6]}{rest[len(digits):]}"
    parsed = datetime.fromisoformat(text)
    try:
        # An instant whose UTC time falls outside years 1-9999 cannot be stored or compared.
        parsed.astimezone(timezone.utc)
    except OverflowError as exc:
        raise ValueError(f"{value!r} is outside the years 1-9999 in UTC") from exc
    return parsed


def _decode_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise ContractError(NOT_OBJECT, "message has no value (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise ContractError(TOO_LARGE, f"message is {len(value)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(BAD_ENCODING, f"value is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ContractError(BAD_JSON, f"value is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ContractError(NOT_OBJECT, f"value is JSON {type(obj).__name__}, not an object")
    # JSON may escape a lone UTF-16 surrogate ("\ud800"): Python decodes it into a string that
    # no UTF-8 file can hold, so bronze could not store the message. Only escapes can make one.
    if b"\\u" in value:
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ContractError(BAD_ENCODING, f"value escapes an unpaired UTF-16 surrogate ({exc.reason})") from exc
    return obj


def _string(obj: dict[str, Any], name: str, *, required: bool, max_chars: int = MAX_ID_CHARS) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ContractError(MISSING_FIELD, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ContractError(WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise ContractError(BAD_VALUE, f"{name} must be 1-{max_chars} characters, got {len(value)}")
    return value


def _enum(obj: dict[str, Any], name: str, allowed: tuple[str, ...], *, required: bool) -> str | None:
    value = _string(obj, name, required=required)
    if value is not None and value not in allowed:
        raise ContractError(BAD_VALUE, f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _timestamp(obj: dict[str, Any], name: str) -> str:
    value = _string(obj, name, required=True, max_chars=64)
    try:
        parse_rfc3339(value)
    except ValueError as exc:
        raise ContractError(BAD_VALUE, f"{name}: {exc}") from exc
    return value


def check_event(obj: dict[str, Any], topic: str) -> dict[str, Any]:
    """Check a decoded engagement event against the contract; return it or raise ContractError."""
    version = obj.get("schema_version")
    if version is None:
        raise ContractError(MISSING_FIELD, "schema_version is required")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ContractError(WRONG_TYPE, f"schema_version must be an integer, got {type(version).__name__}")
    if version != SCHEMA_VERSION:
        raise ContractError(BAD_VALUE, f"schema_version={version} is not supported (expected {SCHEMA_VERSION})")
    _string(obj, "event_id", required=True)
    event_type = _enum(obj, "event_type", EVENT_TYPES, required=True)
    platform = _enum(obj, "platform", PLATFORMS, required=True)
    expected_platform = TOPIC_PLATFORM.get(topic)
    if expected_platform is None:
        raise ContractError(UNKNOWN_TOPIC, f"topic {topic!r} does not carry engagement events")
    if platform != expected_platform:
        raise ContractError(TOPIC_MISMATCH, f"platform={platform!r} arrived on topic {topic}")
    _string(obj, "user_id", required=True)
    _timestamp(obj, "event_time")
    _string(obj, "content_id", required=event_type in ("like", "share"))
    _string(obj, "group_id", required=event_type == "join")
    _enum(obj, "channel", CHANNELS, required=event_type == "join")
    _string(obj, "inviter_user_id", required=False)
    _enum(obj, "target_platform", PLATFORMS, required=event_type == "share")
    return obj


def check_identity(obj: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded identity link; return it or raise ContractError."""
    _string(obj, "link_id", required=True)
    _string(obj, "kuaishou_user_id", required=True)
    _string(obj, "wechat_openid", required=True)
    _string(obj, "wechat_unionid", required=False)
    _timestamp(obj, "linked_at")
    return obj


def validate(topic: str, value: bytes | None) -> dict[str, Any] | Rejection:
    """Validate one message from ``topic``: the parsed object, or the reason it is rejected."""
    try:
        obj = _decode_object(value)
        if topic == IDENTITY_TOPIC:
            return check_identity(obj)
        return check_event(obj, topic)
    except ContractError as exc:
        return exc.rejection


def encode(record: dict[str, Any]) -> bytes:
    """Serialise a record the way producers put it on the wire."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
