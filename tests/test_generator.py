"""The synthetic generator: determinism, contract validity, hard cases, and that the DESIGN
section 5 definitions, recounted here by plain Python (not by the generator's own code),
measure the rates it was configured with."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.contract import (
    BAD_ENCODING,
    BAD_JSON,
    BAD_VALUE,
    IDENTITY_TOPIC,
    KUAISHOU_TOPIC,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    TOPIC_MISMATCH,
    WECHAT_TOPIC,
    WRONG_TYPE,
    Rejection,
    parse_rfc3339,
    validate,
)
from streaming.generator import (
    GeneratorConfig,
    GeneratorConfigError,
    Message,
    expected_rates,
    generate,
    read_jsonl,
    write_jsonl,
)

START = date(2026, 3, 2)
TZ = ZoneInfo("Asia/Shanghai")
WINDOW = timedelta(days=7)
EDGE = timedelta(days=6, hours=23, minutes=59)
# A measured rate must be within this many binomial standard errors of the configured one
# (4 sigma: a false alarm about once in 16,000 independent checks).
SIGMAS = 4.0


@dataclass
class Event:
    event_id: str
    event_type: str
    platform: str
    user_id: str
    event_time: str
    ts: datetime
    event_date: date
    content_id: str | None
    group_id: str | None
    channel: str | None
    inviter_user_id: str | None


@dataclass
class Run:
    config: GeneratorConfig
    messages: list[Message]
    results: list[dict | Rejection]
    events: list[Event]  # valid engagement events, deduplicated on event_id, first delivery
    links: list[dict]


def _parse(config: GeneratorConfig) -> Run:
    messages = list(generate(config))
    results = [validate(m.topic, m.value) for m in messages]
    events: dict[str, Event] = {}
    links: dict[str, dict] = {}
    for message, result in zip(messages, results):
        if not isinstance(result, dict):
            continue
        if message.topic == IDENTITY_TOPIC:
            links.setdefault(result["link_id"], result)
            continue
        if result["event_id"] in events:
            continue
        ts = parse_rfc3339(result["event_time"])
        events[result["event_id"]] = Event(
            event_id=result["event_id"],
            event_type=result["event_type"],
            platform=result["platform"],
            user_id=result["user_id"],
            event_time=result["event_time"],
            ts=ts,
            event_date=ts.astimezone(TZ).date(),
            content_id=result.get("content_id"),
            group_id=result.get("group_id"),
            channel=result.get("channel"),
            inviter_user_id=result.get("inviter_user_id"),
        )
    return Run(config, messages, results, list(events.values()), list(links.values()))


@pytest.fixture(scope="module")
def run() -> Run:
    """A default-sized 30-day run with every kind of noise switched on."""
    return _parse(GeneratorConfig(start_date=START, duplicate_rate=0.02, invalid_rate=0.01, late_rate=0.02))


def _small(**overrides) -> GeneratorConfig:
    values = dict(start_date=START, days=6, kuaishou_users=400, wechat_users=200,
                  kuaishou_groups=20, wechat_groups=30, duplicate_rate=0.05, invalid_rate=0.05,
                  late_rate=0.05)
    values.update(overrides)
    return GeneratorConfig(**values)


def _invite_attribution(events: list[Event]) -> dict[str, list[Event]]:
    """DESIGN 5.2 invite funnel: invitation event_id -> the joins attributed to it."""
    invitations: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
    for e in events:
        if e.event_type == "share" and e.group_id is not None:
            invitations[(e.platform, e.user_id, e.group_id)].append(e)
    attributed: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.event_type != "join" or e.inviter_user_id is None:
            continue
        candidates = [
            i for i in invitations.get((e.platform, e.inviter_user_id, e.group_id), [])
            if i.ts <= e.ts and e.ts - i.ts <= WINDOW
        ]
        if candidates:
            latest = max(i.ts for i in candidates)
            best = min((i for i in candidates if i.ts == latest), key=lambda i: i.event_id)
            attributed[best.event_id].append(e)
    return attributed


def _within(measured: float, expected: float, n: int) -> bool:
    return abs(measured - expected) <= SIGMAS * math.sqrt(expected * (1 - expected) / n)


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_does_not() -> None:
    random.seed(1)  # the global generator must not matter
    first = list(generate(_small()))
    random.seed(2)
    second = list(generate(_small()))
    other = list(generate(_small(seed=8)))
    assert first == second
    assert [m.value for m in first] != [m.value for m in other]


def test_output_does_not_depend_on_hash_randomisation() -> None:
    script = (
        "import hashlib; from datetime import date; from streaming.generator import *\n"
        "h = hashlib.sha256()\n"
        "cfg = GeneratorConfig(start_date=date(2026, 3, 2), days=3, kuaishou_users=150, wechat_users=80,"
        " kuaishou_groups=8, wechat_groups=12, duplicate_rate=0.05, invalid_rate=0.05, late_rate=0.05)\n"
        "for m in generate(cfg): h.update(m.topic.encode() + (m.key or b'') + m.value + str(m.emit_date).encode())\n"
        "print(h.hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[1]
    digests = {
        subprocess.run([sys.executable, "-c", script], cwd=root, env={"PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


# -- contract --------------------------------------------------------------------------------


def test_every_valid_message_passes_the_contract_and_every_invalid_one_fails(run: Run) -> None:
    wrong = [(m.topic, m.value[:120]) for m, r in zip(run.messages, run.results)
             if m.valid != isinstance(r, dict)]
    assert wrong == []
    assert sum(not m.valid for m in run.messages) > 500


def test_each_kind_of_invalid_message_appears(run: Run) -> None:
    rejections = [(m.topic, r) for m, r in zip(run.messages, run.results) if isinstance(r, Rejection)]
    classes = Counter(r.error_class for _, r in rejections)
    for error_class in (TOO_LARGE, BAD_ENCODING, BAD_JSON, NOT_OBJECT, MISSING_FIELD,
                        WRONG_TYPE, BAD_VALUE, TOPIC_MISMATCH):
        assert classes[error_class] > 0, error_class
    reasons = " | ".join(r.message for _, r in rejections)
    for reason in ("content_id is required", "target_platform is required", "channel is required",
                   "event_id is required", "wechat_openid is required", "is not one of",
                   "not RFC 3339", "schema_version must be an integer", "user_id must be a string"):
        assert reason in reasons, reason
    assert any(topic == IDENTITY_TOPIC for topic, _ in rejections)
    assert {topic for topic, _ in rejections} >= {KUAISHOU_TOPIC, WECHAT_TOPIC}
    too_large = [m for m, r in zip(run.messages, run.results)
                 if isinstance(r, Rejection) and r.error_class == TOO_LARGE]
    assert all(64 * 1024 < len(m.value) < 1024 * 1024 for m in too_large)


def test_keys_follow_the_contract(run: Run) -> None:
    for message, result in zip(run.messages, run.results):
        if not isinstance(result, dict):
            continue
        expected = result["kuaishou_user_id"] if message.topic == IDENTITY_TOPIC else result["user_id"]
        assert message.key == expected.encode()
        assert message.event_id == result.get("event_id", result.get("link_id"))


def test_no_noise_by_default() -> None:
    messages = list(generate(_small(duplicate_rate=0.0, invalid_rate=0.0, late_rate=0.0)))
    assert all(m.valid for m in messages)
    ids = [m.event_id for m in messages]
    assert len(ids) == len(set(ids))


def test_redeliveries_repeat_identical_bytes_under_the_same_event_id(run: Run) -> None:
    by_id: dict[str, list[Message]] = defaultdict(list)
    for m in run.messages:
        if m.valid:
            by_id[m.event_id].append(m)
    repeated = [copies for copies in by_id.values() if len(copies) > 1]
    assert len(repeated) > 1000
    for copies in repeated:
        assert len({(m.topic, m.key, m.value) for m in copies}) == 1
    # Invalid messages never reuse the id of a valid event.
    assert not {m.event_id for m in run.messages if not m.valid} & set(by_id)


# -- order and time --------------------------------------------------------------------------


def test_messages_come_out_in_emit_time_order(run: Run) -> None:
    emit_dates = [m.emit_date for m in run.messages]
    assert emit_dates == sorted(emit_dates)
    # On-time first deliveries are sent at their event time: their times never go backwards.
    seen: set[str] = set()
    previous = None
    for message, result in zip(run.messages, run.results):
        if not isinstance(result, dict) or message.event_id in seen:
            continue
        seen.add(message.event_id)
        stamp = parse_rfc3339(result.get("event_time") or result["linked_at"])
        if stamp.astimezone(TZ).date() != message.emit_date:
            continue  # a late event
        assert previous is None or stamp >= previous
        previous = stamp


def test_late_events_are_emitted_one_to_three_days_after_their_event_date(run: Run) -> None:
    seen: set[str] = set()
    lags = Counter()
    for message, result in zip(run.messages, run.results):
        if not isinstance(result, dict) or message.event_id in seen or message.topic == IDENTITY_TOPIC:
            continue
        seen.add(message.event_id)
        event_date = parse_rfc3339(result["event_time"]).astimezone(TZ).date()
        lags[(message.emit_date - event_date).days] += 1
    assert set(lags) == {0, 1, 2, 3}
    late = lags[1] + lags[2] + lags[3]
    assert _within(late / sum(lags.values()), run.config.late_rate, sum(lags.values()))
    # Late messages may arrive after the window: a caller sends "up to day D", then the rest.
    assert max(m.emit_date for m in run.messages) > run.config.end_date


def test_timestamps_show_both_offset_styles_and_midnight_cases(run: Run) -> None:
    texts = [e.event_time for e in run.events]
    assert any(t.endswith("Z") for t in texts)
    assert any(t.endswith("+08:00") for t in texts)
    assert any("." in t for t in texts) and any("." not in t for t in texts)
    after_midnight = [e for e in run.events
                      if e.ts.astimezone(TZ).time() < datetime.min.time().replace(minute=1)]
    before_midnight = [e for e in run.events
                       if e.ts.astimezone(TZ).time() >= datetime.min.time().replace(hour=23, minute=59)]
    assert after_midnight and before_midnight
    # Written in UTC, a minute after local midnight is still the previous day.
    assert any(e.event_time.endswith("Z") and e.ts.astimezone(timezone.utc).date() < e.event_date
               for e in after_midnight)
    assert all(START <= e.event_date <= run.config.end_date for e in run.events)


# -- the hard cases of the funnels -----------------------------------------------------------


def test_invitations_with_two_joins_and_joins_at_the_window_edge(run: Run) -> None:
    attributed = _invite_attribution(run.events)
    invitations = {e.event_id: e for e in run.events if e.event_type == "share" and e.group_id}
    assert any(len({j.user_id for j in joins}) == 2 for joins in attributed.values())
    edge = [j for i, joins in attributed.items() for j in joins if j.ts - invitations[i].ts == EDGE]
    assert len(edge) >= 5
    # Every join that names an inviter is attributed to one of their invitations.
    naming = [e for e in run.events if e.event_type == "join" and e.inviter_user_id]
    assert sum(len(joins) for joins in attributed.values()) == len(naming)


def test_likes_after_joining_and_groups_origin_channels(run: Run) -> None:
    joined_at = {}
    for e in run.events:
        if e.event_type == "join":
            key = (e.platform, e.user_id, e.group_id)
            joined_at[key] = min(joined_at.get(key, e.ts), e.ts)
    likes_after = [e for e in run.events if e.event_type == "like" and e.group_id
                   and joined_at.get((e.platform, e.user_id, e.group_id), e.ts) < e.ts]
    assert len(likes_after) > 100
    first_join = {}
    for e in sorted((e for e in run.events if e.event_type == "join"), key=lambda e: e.ts):
        first_join.setdefault((e.platform, e.group_id), e.channel)
    origins = Counter(first_join.values())
    assert {"content", "live_stream", "search"} <= set(origins)
    assert {"invite", "qr_code", "official_account", "mini_program"} <= set(origins)


def test_some_persons_have_two_openids_under_one_unionid(run: Run) -> None:
    openids = defaultdict(set)
    for link in run.links:
        if link["wechat_unionid"]:
            openids[link["wechat_unionid"]].add(link["wechat_openid"])
    assert any(len(ids) == 2 for ids in openids.values())
    linked = {link["kuaishou_user_id"] for link in run.links}
    kuaishou_users = {e.user_id for e in run.events if e.platform == "kuaishou"}
    share = len(linked & kuaishou_users) / len(kuaishou_users)
    assert abs(share - run.config.link_share) < 0.03


# -- the truth ---------------------------------------------------------------------------------


def test_measured_join_conversion_matches_the_configured_rates(run: Run) -> None:
    """Recount DESIGN 5.2 for cohorts whose 7-day window is over at the last day."""
    last = run.config.end_date
    attempts: Counter = Counter()
    conversions: Counter = Counter()
    attributed = _invite_attribution(run.events)
    for e in run.events:
        if e.event_type == "share" and e.group_id and e.event_date + WINDOW <= last:
            attempts[(e.platform, "invite")] += 1
            conversions[(e.platform, "invite")] += e.event_id in attributed

    joins: dict[tuple[str, str, str], list[datetime]] = defaultdict(list)
    for e in run.events:
        if e.event_type == "join":
            joins[(e.platform, e.user_id, e.group_id)].append(e.ts)
    first_like: dict[tuple[str, str, str, date], datetime] = {}
    for e in run.events:
        if e.event_type == "like" and e.group_id:
            key = (e.platform, e.user_id, e.group_id, e.event_date)
            first_like[key] = min(first_like.get(key, e.ts), e.ts)
    for (platform, user, group, cohort_date), like_ts in first_like.items():
        group_joins = joins.get((platform, user, group), [])
        if cohort_date + WINDOW > last or any(j < like_ts for j in group_joins):
            continue
        attempts[(platform, "content")] += 1
        conversions[(platform, "content")] += any(like_ts <= j <= like_ts + WINDOW for j in group_joins)

    configured = expected_rates(run.config)["join_conversion"]
    for (platform, funnel), n in attempts.items():
        assert n >= 500, (platform, funnel, n)
        rate = conversions[(platform, funnel)] / n
        assert _within(rate, configured[platform][funnel], n), (platform, funnel, n, rate)
    assert len(attempts) == 4


def test_measured_retention_and_propagation_match_expected_rates(run: Run) -> None:
    last = run.config.end_date
    expected = expected_rates(run.config)
    first_join: dict[tuple[str, str], datetime] = {}
    active: dict[tuple[str, str], set[date]] = defaultdict(set)
    for e in run.events:
        active[(e.platform, e.user_id)].add(e.event_date)
        if e.event_type == "join":
            key = (e.platform, e.user_id)
            first_join[key] = min(first_join.get(key, e.ts), e.ts)
    for platform in ("kuaishou", "wechat"):
        for n in (1, 7, 14):
            cohort = [(k, ts.astimezone(TZ).date()) for k, ts in first_join.items()
                      if k[0] == platform and ts.astimezone(TZ).date() + timedelta(days=n) <= last]
            retained = sum(d + timedelta(days=n) in active[k] for k, d in cohort)
            rate = retained / len(cohort)
            assert _within(rate, expected["retention"][platform][n], len(cohort)), (platform, n, rate)

    # Propagation (DESIGN 5.7): persons are connected components of the identity links.
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node: tuple[str, str]) -> tuple[str, str]:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for link in run.links:
        nodes = [("kuaishou", link["kuaishou_user_id"]), ("wechat", link["wechat_openid"])]
        if link["wechat_unionid"]:
            nodes.append(("unionid", link["wechat_unionid"]))
        for node in nodes[1:]:
            a, b = find(nodes[0]), find(node)
            if a != b:
                parent[a] = b
    linked = {find(("kuaishou", link["kuaishou_user_id"])) for link in run.links}
    shares: dict[tuple, list[datetime]] = defaultdict(list)
    for e in run.events:
        if e.platform == "wechat" and e.event_type == "share":
            shares[(find(("wechat", e.user_id)), e.content_id)].append(e.ts)
    likes = propagated = 0
    latencies = []
    for e in run.events:
        if e.platform != "kuaishou" or e.event_type != "like" or e.event_date + timedelta(days=1) > last:
            continue
        person = find(("kuaishou", e.user_id))
        if person not in linked:
            continue
        likes += 1
        delays = [s - e.ts for s in shares.get((person, e.content_id), []) if timedelta(0) <= s - e.ts <= timedelta(days=1)]
        if delays:
            propagated += 1
            latencies.append(min(delays).total_seconds())
    assert _within(propagated / likes, expected["propagation_rate"], likes)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 600  # mostly seconds to minutes


def test_expected_rates_follow_the_lifetime_model() -> None:
    config = GeneratorConfig(start_date=START)
    rates = expected_rates(config)
    assert rates["join_conversion"] == {
        "kuaishou": {"content": 0.065, "invite": 0.10},
        "wechat": {"content": 0.08, "invite": 0.21},
    }
    assert rates["retention"]["kuaishou"][1] == pytest.approx(0.45 * math.exp(-1 / 32))
    assert rates["retention"]["wechat"][30] == pytest.approx(0.35 * math.exp(-30 / 136))
    json.dumps(rates)  # printable as is


# -- files and config ------------------------------------------------------------------------


def test_jsonl_round_trip_preserves_bytes(tmp_path: Path) -> None:
    messages = list(generate(_small(days=3)))
    assert any(not m.valid for m in messages)
    path = tmp_path / "traffic.jsonl"
    assert write_jsonl(messages, path) == len(messages)
    assert list(read_jsonl(path)) == messages
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"topic", "key", "value_b64", "valid", "event_id", "emit_date"}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"days": 0}, "days must be >= 1"),
        ({"kuaishou_users": -1}, "kuaishou_users"),
        ({"wechat_invite_conversion": 1.5}, "wechat_invite_conversion"),
        ({"duplicate_rate": -0.1}, "duplicate_rate"),
        ({"kuaishou_mean_lifetime_days": 0}, "kuaishou_mean_lifetime_days"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"start_date": datetime(2026, 3, 2)}, "start_date"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_config_is_validated_with_clear_errors(overrides: dict, fragment: str) -> None:
    values = {"start_date": START, **overrides}
    with pytest.raises(GeneratorConfigError, match=fragment):
        GeneratorConfig(**values)


def test_default_size_suits_the_demo(run: Run) -> None:
    valid_events = len(run.events)
    assert 150_000 <= valid_events <= 250_000
