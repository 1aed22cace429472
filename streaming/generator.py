"""Synthetic traffic for both platforms and the identity links, deterministic by seed.

The generator simulates Kuaishou (content-driven) and WeChat (invitation-driven) groups with the
rates of DESIGN section 1, so that every gold number the pipeline computes can be checked
against the truth it was generated from (:func:`expected_rates`). It is built so that the
definitions of DESIGN section 5 measure the configured rates *exactly in expectation*; the
comments below say which modelling rule protects which definition.

Model, per platform
-------------------
* **Groups** are created over the window by an origin channel (Kuaishou: content, live_stream,
  search, other; WeChat: invite, qr_code, official_account, mini_program). A group's first join
  is its owner's, with the origin channel, so ``group_health.origin_channel`` reads it back.
  Some groups die young (4-14 days after creation no like or invitation names them any more;
  joins already on their way still land), the rest live long.
  A group is "alive" on the days strictly between its creation day and its death day.
* **Prospects** (Kuaishou viewers, WeChat official-account readers) arrive uniformly over the
  window, stay ~Exponential(10-14 days) and like content on a share of those days. A like of
  content that promotes a group carries its ``group_id``: for a non-member that is a *content
  attempt*, which converts (the user joins the group within 7 days) with the platform's content
  conversion. The first join makes the user a *member*.
* **Members** live ``L ~ Exponential(mean lifetime)`` days after the calendar day of their first
  join and, on each calendar day ``cohort_date + N`` with ``N <= L``, are active with the
  platform's daily activity probability ``q``: they like (sometimes content of their own groups
  - a like after joining, which is no attempt), share, and invite to their groups. On every
  other day after the cohort day they emit nothing at all, joins included.
* **Invitations** (shares with a ``group_id``) come from group owners on most of their active
  days and from members mostly in their first weeks (so invitee chains stay sub-critical and
  long runs do not explode). Each converts with the invite conversion; a converted one brings
  one join (sometimes two different invitees), naming the inviter, mostly hours later and
  sometimes exactly 6 d 23 h 59 min later. Invitees are new accounts.
* **Identity**: ``link_share`` of Kuaishou accounts link a WeChat OpenID (the Kuaishou app's
  OpenID ``A``) when they first appear; some links carry a UnionID, and some of those persons
  have a second OpenID ``B`` under it (a second link), which is a WeChat account that later
  gets invited into WeChat groups - so some persons are members on both platforms. ``A`` only
  ever shares Kuaishou content on WeChat: each Kuaishou like of a linked person is shared by
  ``A`` with the same ``content_id`` within 24 h with probability ``propagation_rate``.

Exactness rules (why the rates come out right)
----------------------------------------------
* Content funnel: while a (user, group) attempt is open (7 days) or its join is pending, the
  user does not like that group's content, so no second attempt shares its join, and invitees
  are always new accounts, so no invite join converts someone's open attempt.
* Invite funnel: an inviter invites to the same group again only after every join their
  previous invitations to it brought has happened (and every join comes at most
  6 d 23 h 59 min after its invitation), so last-touch attribution always finds the
  invitation that produced the join.
* Retention: after the cohort day a member emits events only on their active days; a join that
  a member's own conversion causes lands later the same day or on one of their active days.
  So retained on day N = ``q * P(L >= N)``.
* Propagation: Kuaishou content ids are never liked twice by the same person, and only ``A``
  shares Kuaishou content on WeChat, so each like propagates independently with the rate.
* Events after the window are dropped; they only belong to cohorts whose rows are not emitted
  at the last day of the window (``cohort_date + 7 > as_of_date``).

Wire variety: timestamps alternate between the local offset and UTC ``Z``, half carry a
millisecond fraction, 1.5 % of activity falls in the first or last minute of the local day;
10 % of events leave out their null fields instead of writing ``null`` and 2 % carry an unknown
extra field (both allowed by the contract).

Messages come out ordered by emit time. Redeliveries (``duplicate_rate``) repeat a valid
message's bytes later; late events (``late_rate``) are emitted 1-3 calendar days after their
``event_date``; invalid messages (``invalid_rate``) are extra messages of varied kinds that the
contract rejects - they never replace a valid event, so the truth is unaffected.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.contract import (
    EVENT_FIELDS,
    IDENTITY_TOPIC,
    KUAISHOU_TOPIC,
    MAX_MESSAGE_BYTES,
    PLATFORM_TOPIC,
    encode,
)
from core.errors import UserError
from core.tables import RETENTION_DAY_OFFSETS

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# "Exactly at the edge" of the 7-day window, and the latest any generated join comes.
EDGE_DELAY_MS = WEEK_MS - MINUTE_MS


# Kinds of invalid messages, emitted round-robin so that each appears once invalid_rate > 0.
INVALID_EVENT_KINDS = (
    "bad_json",
    "not_object",
    "invalid_utf8",
    "wrong_type",
    "unknown_enum",
    "platform_topic_mismatch",
    "missing_like_content_id",
    "missing_share_target_platform",
    "missing_join_channel",
    "missing_event_id",
    "bad_timestamp",
    "too_large",
)
INVALID_IDENTITY_KINDS = ("identity_missing_openid", "identity_bad_timestamp")
INVALID_KINDS = INVALID_EVENT_KINDS + INVALID_IDENTITY_KINDS

# Local hour-of-day weights: quiet at night, peak in the evening.
_HOUR_WEIGHTS = (3, 2, 1, 1, 1, 1, 2, 4, 5, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 10, 11, 11, 9, 6)
_HOUR_CUM = tuple(sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24))
# Share of activity times forced into the first or last minute of the local day.
_MIDNIGHT_SHARE = 0.015
_TWO_JOIN_SHARE = 0.15
_EDGE_JOIN_SHARE = 0.03
_UNIONID_SHARE = 0.4  # of linked Kuaishou accounts
_SECOND_OPENID_SHARE = 0.5  # of linked accounts with a UnionID
_INITIAL_GROUP_SHARE = 0.3  # groups that exist from the first day
_OPENID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class GeneratorConfigError(UserError, ValueError):
    """A generator setting is out of range; the message names it and the accepted values."""


@dataclass(frozen=True)
class GeneratorConfig:
    """What to simulate. Rates default to the industry figures of DESIGN section 1.

    ``kuaishou_users`` / ``wechat_users`` are the prospects (Kuaishou viewers, WeChat
    official-account readers) arriving over the window; group owners and invitees are new
    accounts on top of them. The defaults make ~200k valid events in 30 days.
    """

    start_date: date
    days: int = 30
    seed: int = 7
    kuaishou_users: int = 7_000
    wechat_users: int = 3_000
    kuaishou_groups: int = 150
    wechat_groups: int = 500
    timezone: str = "Asia/Shanghai"
    wechat_invite_conversion: float = 0.21
    kuaishou_invite_conversion: float = 0.10
    kuaishou_content_conversion: float = 0.065
    wechat_content_conversion: float = 0.08
    wechat_mean_lifetime_days: float = 136
    kuaishou_mean_lifetime_days: float = 32
    kuaishou_daily_activity: float = 0.45
    wechat_daily_activity: float = 0.35
    link_share: float = 0.2
    propagation_rate: float = 0.25
    duplicate_rate: float = 0.0
    invalid_rate: float = 0.0
    late_rate: float = 0.0

    def __post_init__(self) -> None:
        # datetime is a subclass of date; a datetime here would silently shift the window.
        if not isinstance(self.start_date, date) or isinstance(self.start_date, datetime):
            raise GeneratorConfigError(f"start_date must be a datetime.date, got {self.start_date!r}")
        for name in ("days", "seed", "kuaishou_users", "wechat_users", "kuaishou_groups", "wechat_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise GeneratorConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("days", "kuaishou_users", "wechat_users", "kuaishou_groups", "wechat_groups"):
            if getattr(self, name) < 1:
                raise GeneratorConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise GeneratorConfigError(
                f"timezone={self.timezone!r} is not an IANA time zone (e.g. Asia/Shanghai)"
            ) from exc
        probabilities = (
            "wechat_invite_conversion",
            "kuaishou_invite_conversion",
            "kuaishou_content_conversion",
            "wechat_content_conversion",
            "kuaishou_daily_activity",
            "wechat_daily_activity",
            "link_share",
            "propagation_rate",
            "duplicate_rate",
            "invalid_rate",
            "late_rate",
        )
        for name in probabilities:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise GeneratorConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("wechat_mean_lifetime_days", "kuaishou_mean_lifetime_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise GeneratorConfigError(f"{name} must be a positive number of days, got {value!r}")

    @property
    def end_date(self) -> date:
        """The last simulated local date (inclusive)."""
        return self.start_date + timedelta(days=self.days - 1)


@dataclass(frozen=True)
class Message:
    """One Kafka message as the generator emits it.

    ``event_id`` is the event's id (the ``link_id`` for identity links; for an invalid message
    the id it carries, if any). ``emit_date`` is the local date on which it is sent.
    """

    topic: str
    key: bytes | None
    value: bytes
    valid: bool
    event_id: str | None
    emit_date: date


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def generate(config: GeneratorConfig) -> Iterator[Message]:
    """Simulate ``config.days`` days of both platforms; yield messages in emit-time order.

    Deterministic: the same config gives the same messages, byte for byte (one
    ``random.Random(config.seed)``, no clock, no global random state, no set iteration).
    """
    return _Simulation(config).run()


def expected_rates(config: GeneratorConfig) -> dict[str, Any]:
    """The truth the simulation is drawn from, in the terms of DESIGN section 5.

    * ``join_conversion[platform][funnel]`` is the configured conversion: every invitation and
      every content attempt converts independently with it (see the module docstring for why
      the pipeline's attribution measures exactly that).
    * ``retention[platform][N]`` for N in 1, 7, 14, 30 is ``q * exp(-N / mean_lifetime)``: a
      member's lifetime after the cohort day is ``L ~ Exponential(mean)``, they are alive on
      ``cohort_date + N`` iff ``L >= N`` (probability ``exp(-N / mean)``), and alive members are
      active on a day with probability ``q`` (the platform's daily activity), independently;
      a member has events on no other day after the cohort day.
    * ``propagation_rate``: share of linked persons' Kuaishou likes shared on WeChat in 24 h.
    """
    lifetimes = {
        "kuaishou": (config.kuaishou_daily_activity, config.kuaishou_mean_lifetime_days),
        "wechat": (config.wechat_daily_activity, config.wechat_mean_lifetime_days),
    }
    return {
        "join_conversion": {
            "kuaishou": {
                "content": config.kuaishou_content_conversion,
                "invite": config.kuaishou_invite_conversion,
            },
            "wechat": {
                "content": config.wechat_content_conversion,
                "invite": config.wechat_invite_conversion,
            },
        },
        "retention": {
            platform: {n: q * math.exp(-n / mean) for n in RETENTION_DAY_OFFSETS}
            for platform, (q, mean) in lifetimes.items()
        },
        "propagation_rate": config.propagation_rate,
    }


def write_jsonl(messages: Iterable[Message], path: str | Path) -> int:
    """Write messages one JSON object per line (value as base64, so any bytes survive).

    Returns the number of messages written.
    """
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for message in messages:
            line = {
                "topic": message.topic,
                "key": None if message.key is None else message.key.decode("utf-8"),
                "value_b64": base64.b64encode(message.value).decode("ascii"),
                "valid": message.valid,
                "event_id": message.event_id,
                "emit_date": message.emit_date.isoformat(),
            }
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> Iterator[Message]:
    """Read messages written by :func:`write_jsonl`, in file order."""
    with open(path, encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield Message(
                    topic=obj["topic"],
                    key=None if obj["key"] is None else obj["key"].encode("utf-8"),
                    value=base64.b64decode(obj["value_b64"], validate=True),
                    valid=bool(obj["valid"]),
                    event_id=obj["event_id"],
                    emit_date=date.fromisoformat(obj["emit_date"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a generator message line: {exc}") from exc


# --------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlatformModel:
    """Behaviour constants of one platform (the rates that matter come from the config)."""

    platform: str
    content_conversion: float
    invite_conversion: float
    mean_lifetime_days: float
    daily_activity: float
    prospects: int
    groups: int
    prospect_daily_activity: float
    prospect_mean_stay_days: float
    prospect_extra_likes: float  # likes on an active day = 1 + Poisson(this)
    member_extra_likes: float
    promoted_like_share: float  # likes whose content promotes a group
    own_group_like_share: float  # of those: the member's own group
    shares_per_day: float  # Poisson mean of plain shares on an active day
    owner_invite_probability: float  # a group owner invites on an active day
    # A member invites on an active day N days after their cohort day with probability
    # early * exp(-N / decay) + late: keen at first, then rarely, so invitee chains die out.
    member_invite_early: float
    member_invite_late: float
    member_invite_decay_days: float
    share_targets: tuple[tuple[str, float], ...]
    origin_channels: tuple[tuple[str, float], ...]
    young_death: dict[str, float]
    invite_channels: tuple[tuple[str, float], ...]


def _models(config: GeneratorConfig) -> dict[str, _PlatformModel]:
    return {
        "kuaishou": _PlatformModel(
            platform="kuaishou",
            content_conversion=config.kuaishou_content_conversion,
            invite_conversion=config.kuaishou_invite_conversion,
            mean_lifetime_days=config.kuaishou_mean_lifetime_days,
            daily_activity=config.kuaishou_daily_activity,
            prospects=config.kuaishou_users,
            groups=config.kuaishou_groups,
            prospect_daily_activity=0.5,
            prospect_mean_stay_days=10.0,
            prospect_extra_likes=2.0,
            member_extra_likes=2.0,
            promoted_like_share=0.5,
            own_group_like_share=0.35,
            shares_per_day=0.3,
            owner_invite_probability=0.5,
            member_invite_early=0.25,
            member_invite_late=0.03,
            member_invite_decay_days=14.0,
            share_targets=(("kuaishou", 0.6), ("wechat", 0.4)),
            origin_channels=(("content", 0.45), ("live_stream", 0.35), ("search", 0.15), ("other", 0.05)),
            young_death={"content": 0.45, "live_stream": 0.35, "search": 0.6, "other": 0.5},
            invite_channels=(("invite", 0.55), ("qr_code", 0.45)),
        ),
        "wechat": _PlatformModel(
            platform="wechat",
            content_conversion=config.wechat_content_conversion,
            invite_conversion=config.wechat_invite_conversion,
            mean_lifetime_days=config.wechat_mean_lifetime_days,
            daily_activity=config.wechat_daily_activity,
            prospects=config.wechat_users,
            groups=config.wechat_groups,
            prospect_daily_activity=0.4,
            prospect_mean_stay_days=14.0,
            prospect_extra_likes=1.0,
            member_extra_likes=1.5,
            promoted_like_share=0.25,
            own_group_like_share=0.35,
            shares_per_day=0.4,
            owner_invite_probability=0.9,
            member_invite_early=0.9,
            member_invite_late=0.05,
            member_invite_decay_days=14.0,
            share_targets=(("wechat", 0.9), ("kuaishou", 0.1)),
            origin_channels=(("invite", 0.45), ("qr_code", 0.25), ("official_account", 0.2), ("mini_program", 0.1)),
            young_death={"invite": 0.2, "qr_code": 0.3, "official_account": 0.25, "mini_program": 0.4},
            invite_channels=(("invite", 0.65), ("qr_code", 0.35)),
        ),
    }


class _Group:
    __slots__ = ("group_id", "platform", "origin_channel", "created_day", "created_ms", "dies_day", "contents")

    def __init__(self, group_id: str, platform: str, origin_channel: str, created_day: int,
                 created_ms: int, dies_day: int, contents: list[str]) -> None:
        self.group_id = group_id
        self.platform = platform
        self.origin_channel = origin_channel
        self.created_day = created_day
        self.created_ms = created_ms
        self.dies_day = dies_day
        self.contents = contents

    def alive_on(self, day: int) -> bool:
        return self.created_day < day < self.dies_day


class _Account:
    """One platform account and the state the exactness rules need."""

    __slots__ = (
        "user_id",
        "platform",
        "first_join_ms",
        "cohort_day",
        "owner",
        "active_days",
        "joined",
        "blocked_until",
        "invite_settled_ms",
        "liked",
        "sharer_openid",
        "pending_links",
    )

    def __init__(self, user_id: str, platform: str) -> None:
        self.user_id = user_id
        self.platform = platform
        self.first_join_ms: int | None = None
        self.cohort_day: int | None = None
        self.owner = False
        self.active_days: list[int] = []  # member days after the cohort day, ascending
        self.joined: dict[str, int] = {}  # group_id -> join time (possibly still in the future)
        self.blocked_until: dict[str, int] = {}  # group_id -> end of an open, unconverted attempt
        # group_id -> time of the last join this account's invitations to it brought
        self.invite_settled_ms: dict[str, int] = {}
        self.liked: set[str] = set()  # membership tests only, never iterated (hash order)
        self.sharer_openid: str | None = None  # the linked OpenID that shares on WeChat
        self.pending_links: list[dict[str, Any]] = []  # emitted just before the first event


class _Simulation:
    """One run: state of every account and group, and a heap of messages by emit time."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.tz = ZoneInfo(config.timezone)
        self.models = _models(config)
        # Local midnights as epoch milliseconds; index days (and a margin for late emission).
        self._midnights: dict[int, int] = {}
        self.day_start = [self.midnight(d) for d in range(config.days + 1)]
        self.dates = [config.start_date + timedelta(days=d) for d in range(config.days)]
        self.window_end = self.day_start[config.days]
        self.heap: list[tuple[int, int, Message]] = []
        self.seq = 0
        self.invalid_count = {"event": 0, "identity": 0}
        self.serial = {"kuaishou_user": 0, "group": 0, "link": 0}
        self.used_openids: set[str] = set()
        self.member_days: dict[int, list[_Account]] = {}
        self.prospect_days: dict[int, list[_Account]] = {}
        self.groups: dict[str, list[_Group]] = {"kuaishou": [], "wechat": []}
        self.groups_by_day: dict[int, list[_Group]] = {}
        self.group_by_id: dict[str, _Group] = {}
        self.arrivals: dict[int, list[str]] = {}
        # WeChat OpenIDs "B" of linked persons, waiting to be invited into a WeChat group.
        self.wechat_invitee_queue: list[_Account] = []

    # -- time ----------------------------------------------------------------------------------

    def midnight(self, day: int) -> int:
        """Epoch ms of local midnight starting day ``day`` of the window."""
        cached = self._midnights.get(day)
        if cached is None:
            local = datetime.combine(self.config.start_date + timedelta(days=day), time(0), tzinfo=self.tz)
            cached = int(local.timestamp()) * SECOND_MS
            self._midnights[day] = cached
        return cached

    def day_of(self, ms: int) -> int:
        """Day index (local calendar day) of an instant inside the window."""
        return bisect.bisect_right(self.day_start, ms) - 1

    def local_date(self, ms: int) -> date:
        if self.day_start[0] <= ms < self.window_end:
            return self.dates[self.day_of(ms)]
        return datetime.fromtimestamp(ms // SECOND_MS, self.tz).date()

    def format_time(self, ms: int) -> str:
        """RFC 3339: half with the local offset, half in UTC ``Z``; a fraction where needed."""
        rng = self.rng
        utc = rng.random() < 0.5
        whole, frac = divmod(ms, SECOND_MS)
        moment = datetime.fromtimestamp(whole, timezone.utc if utc else self.tz)
        if frac or rng.random() < 0.2:
            text = moment.replace(microsecond=frac * 1000).isoformat(timespec="milliseconds")
        else:
            text = moment.isoformat(timespec="seconds")
        return text.replace("+00:00", "Z") if utc else text

    def snap(self, ms: int) -> int:
        """Half of the instants are whole seconds, so fractions appear only sometimes."""
        return ms - ms % SECOND_MS if self.rng.random() < 0.5 else ms

    def time_in_day(self, day: int) -> int:
        """An activity instant on local day ``day``, at least 3 s before the next midnight
        (so a same-day join after it always fits)."""
        rng = self.rng
        start = self.day_start[day]
        length = self.day_start[day + 1] - start
        if rng.random() < _MIDNIGHT_SHARE:
            if rng.random() < 0.5:
                offset = rng.randrange(0, MINUTE_MS)
            else:
                offset = rng.randrange(length - MINUTE_MS, length - 3 * SECOND_MS)
        else:
            hour = bisect.bisect_right(_HOUR_CUM, rng.random() * _HOUR_CUM[-1])
            offset = min(hour * HOUR_MS + rng.randrange(HOUR_MS), length - 3 * SECOND_MS)
        return self.snap(start + offset)

    # -- ids -----------------------------------------------------------------------------------

    def event_id(self) -> str:
        # UUID-shaped; formatted by hand because uuid.UUID() costs as much as the rest.
        h = "%032x" % self.rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def new_openid(self) -> str:
        while True:
            openid = "o" + "".join(self.rng.choices(_OPENID_ALPHABET, k=27))
            if openid not in self.used_openids:
                self.used_openids.add(openid)
                return openid

    def new_kuaishou_account(self) -> _Account:
        # Numeric ids that look random but never collide: one slot of 37 per serial.
        serial = self.serial["kuaishou_user"]
        self.serial["kuaishou_user"] += 1
        account = _Account(str(3_000_000_000 + serial * 37 + self.rng.randrange(37)), "kuaishou")
        rng = self.rng
        if rng.random() < self.config.link_share:
            sharer = self.new_openid()
            account.sharer_openid = sharer
            unionid = "u" + self.new_openid()[1:] if rng.random() < _UNIONID_SHARE else None
            account.pending_links.append(self.link_record(account.user_id, sharer, unionid))
            if unionid is not None and rng.random() < _SECOND_OPENID_SHARE:
                second = _Account(self.new_openid(), "wechat")
                account.pending_links.append(self.link_record(account.user_id, second.user_id, unionid))
                self.wechat_invitee_queue.append(second)
        return account

    def new_account(self, platform: str) -> _Account:
        if platform == "kuaishou":
            return self.new_kuaishou_account()
        return _Account(self.new_openid(), "wechat")

    def link_record(self, kuaishou_user_id: str, openid: str, unionid: str | None) -> dict[str, Any]:
        self.serial["link"] += 1
        return {
            "link_id": f"lnk-{self.serial['link']:07d}-{self.rng.getrandbits(24):06x}",
            "kuaishou_user_id": kuaishou_user_id,
            "wechat_openid": openid,
            "wechat_unionid": unionid,
            "linked_at": None,  # set when the link is emitted
        }

    def emit_links(self, account: _Account, first_event_ms: int, not_before_ms: int) -> None:
        """Emit an account's identity links just before its first event, so every run whose
        ``as_of_date`` covers one of its events also knows the link."""
        for record in account.pending_links:
            at = max(not_before_ms, first_event_ms - self.rng.randrange(5 * SECOND_MS, 10 * MINUTE_MS))
            record["linked_at"] = self.format_time(at)
            self.emit(IDENTITY_TOPIC, record["kuaishou_user_id"], record, at, record["link_id"], late_ok=False)
        account.pending_links = []

    # -- emission ------------------------------------------------------------------------------

    def push(self, emit_ms: int, message_args: tuple[str, bytes | None, bytes, bool, str | None]) -> None:
        topic, key, value, valid, event_id = message_args
        message = Message(topic, key, value, valid, event_id, self.local_date(emit_ms))
        self.seq += 1
        heapq.heappush(self.heap, (emit_ms, self.seq, message))

    def emit(self, topic: str, key: str, record: dict[str, Any], at_ms: int, event_id: str,
             *, late_ok: bool = True) -> None:
        """Queue one valid message, plus its redelivery, late shift and invalid sibling."""
        rng = self.rng
        config = self.config
        value = encode(record)
        key_bytes = key.encode("utf-8")
        emit_ms = at_ms
        if late_ok and rng.random() < config.late_rate:
            # Sent on a later local calendar day: event_date + 1..3.
            day = self.day_of(at_ms) + rng.randint(1, 3)
            start, end = self.midnight(day), self.midnight(day + 1)
            emit_ms = start + rng.randrange(end - start)
        self.push(emit_ms, (topic, key_bytes, value, True, event_id))
        if rng.random() < config.duplicate_rate:
            r = rng.random()
            if r < 0.7:
                redelivery = rng.randrange(SECOND_MS, 2 * MINUTE_MS)
            elif r < 0.95:
                redelivery = rng.randrange(2 * MINUTE_MS, 6 * HOUR_MS)
            else:
                redelivery = rng.randrange(DAY_MS, 2 * DAY_MS)
            self.push(emit_ms + redelivery, (topic, key_bytes, value, True, event_id))
        if rng.random() < config.invalid_rate:
            self.push(emit_ms + rng.randrange(0, 5 * SECOND_MS), self.invalid_message(topic, key, record))

    def emit_event(self, account: _Account, event_type: str, at_ms: int, *, content_id: str | None = None,
                   group_id: str | None = None, channel: str | None = None,
                   inviter_user_id: str | None = None, target_platform: str | None = None) -> None:
        """Build one engagement event of ``account`` at ``at_ms`` and queue it."""
        if at_ms >= self.window_end:
            return  # only cohorts whose rows are never emitted for the window would see it
        rng = self.rng
        user = account.user_id
        event_id = self.event_id()
        record: dict[str, Any] = {
            "event_id": event_id,
            "schema_version": 1,
            "event_type": event_type,
            "platform": account.platform,
            "user_id": user,
            "event_time": self.format_time(at_ms),
            "content_id": content_id,
            "group_id": group_id,
            "channel": channel,
            "inviter_user_id": inviter_user_id,
            "target_platform": target_platform,
        }
        r = rng.random()
        if r < 0.1:
            # Absent and null are the same thing in the contract; both must be handled.
            record = {k: v for k, v in record.items() if v is not None}
        elif r < 0.12:
            record["client"] = {"os": rng.choice(("android", "ios")), "app_version": "12.4.1"}
        self.emit(PLATFORM_TOPIC[account.platform], user, record, at_ms, event_id)

    def invalid_message(self, topic: str, key: str, record: dict[str, Any]) -> tuple[str, bytes | None, bytes, bool, str | None]:
        """A message derived from ``record`` that breaks the contract in one of many ways."""
        rng = self.rng
        key_bytes = key.encode("utf-8")
        if topic == IDENTITY_TOPIC:
            kind = INVALID_IDENTITY_KINDS[self.invalid_count["identity"] % len(INVALID_IDENTITY_KINDS)]
            self.invalid_count["identity"] += 1
            bad = dict(record, link_id=f"lnk-bad-{rng.getrandbits(48):012x}")
            if kind == "identity_missing_openid":
                del bad["wechat_openid"]
            else:
                bad["linked_at"] = bad["linked_at"][:19]  # no offset
            return topic, key_bytes, encode(bad), False, bad["link_id"]

        kind = INVALID_EVENT_KINDS[self.invalid_count["event"] % len(INVALID_EVENT_KINDS)]
        self.invalid_count["event"] += 1
        event_id = self.event_id()  # never the id of a valid event
        bad = {name: record.get(name) for name in EVENT_FIELDS}
        bad["event_id"] = event_id
        value: bytes
        if kind == "bad_json":
            value = encode(bad)[: -rng.randint(1, 20)]
        elif kind == "not_object":
            value = encode([bad]) if rng.random() < 0.5 else b'"' + event_id.encode() + b'"'
        elif kind == "invalid_utf8":
            value = encode(bad).replace(b'"user_id":"', b'"user_id":"\xff\xfe', 1)
        elif kind == "wrong_type":
            if rng.random() < 0.5:
                bad["schema_version"] = "1"
            else:
                bad["user_id"] = 12345
            value = encode(bad)
        elif kind == "unknown_enum":
            field, bogus = rng.choice((("event_type", "comment"), ("channel", "tiktok"), ("target_platform", "weibo")))
            bad[field] = bogus
            if field == "channel":
                bad.update(event_type="join", group_id=bad["group_id"] or "grp-unknown")
            if field == "target_platform":
                bad.update(event_type="share", content_id=bad["content_id"] or "cnt-unknown")
            value = encode(bad)
        elif kind == "platform_topic_mismatch":
            bad["platform"] = "wechat" if topic == KUAISHOU_TOPIC else "kuaishou"
            value = encode(bad)
        elif kind == "missing_like_content_id":
            bad.update(event_type="like", content_id=None)
            value = encode(bad)
        elif kind == "missing_share_target_platform":
            bad.update(event_type="share", content_id=bad["content_id"] or "cnt-x", target_platform=None)
            value = encode(bad)
        elif kind == "missing_join_channel":
            bad.update(event_type="join", group_id=bad["group_id"] or "grp-x", channel=None)
            del bad["channel"]
            value = encode(bad)
        elif kind == "missing_event_id":
            del bad["event_id"]
            return topic, key_bytes, encode(bad), False, None
        elif kind == "bad_timestamp":
            bad["event_time"] = bad["event_time"][:19]  # local wall time, no offset
            value = encode(bad)
        else:  # too_large: an otherwise valid event padded past the limit
            bad["padding"] = "x" * (MAX_MESSAGE_BYTES + rng.randrange(1, 8 * 1024))
            value = encode(bad)
        return topic, key_bytes, value, False, event_id

    # -- population ----------------------------------------------------------------------------

    def plan(self) -> None:
        """Draw group creations and prospect arrivals for the whole window up front."""
        rng = self.rng
        days = self.config.days
        for platform, model in self.models.items():
            channels, weights = zip(*model.origin_channels)
            for _ in range(model.groups):
                day = 0 if rng.random() < _INITIAL_GROUP_SHARE else rng.randrange(days)
                channel = rng.choices(channels, weights)[0]
                if rng.random() < model.young_death[channel]:
                    dies = day + rng.randint(4, 14)
                else:
                    dies = day + 15 + int(rng.expovariate(1 / 150))
                self.serial["group"] += 1
                prefix = "ksg" if platform == "kuaishou" else "wxg"
                group_id = f"{prefix}-{self.serial['group']:05d}"
                if platform == "kuaishou":
                    contents = [f"ks{'l' if rng.random() < 0.3 else 'v'}-{group_id[4:]}-{k:03d}" for k in range(60)]
                else:
                    contents = [f"wxa-{group_id[4:]}-{k:03d}" for k in range(60)]
                created_ms = self.day_start[day] + rng.randrange(HOUR_MS, self.day_start[day + 1] - self.day_start[day] - HOUR_MS)
                group = _Group(group_id, platform, channel, day, created_ms, dies, contents)
                self.groups[platform].append(group)
                self.group_by_id[group_id] = group
                self.groups_by_day.setdefault(day, []).append(group)
            for _ in range(model.prospects):
                self.arrivals.setdefault(rng.randrange(days), []).append(platform)

    def make_member(self, account: _Account, join_ms: int) -> None:
        """First join: fix the member's active days ``cohort_date + N`` (N <= L, each with
        probability q) once, so every later event of theirs can be placed on one of them."""
        account.first_join_ms = join_ms
        if join_ms >= self.window_end:
            return
        model = self.models[account.platform]
        rng = self.rng
        cohort_day = self.day_of(join_ms)
        account.cohort_day = cohort_day
        lifetime = rng.expovariate(1 / model.mean_lifetime_days)
        n = 1
        while n <= lifetime and cohort_day + n < self.config.days:
            if rng.random() < model.daily_activity:
                account.active_days.append(cohort_day + n)
                self.member_days.setdefault(cohort_day + n, []).append(account)
            n += 1

    def arrive_prospect(self, platform: str, day: int) -> None:
        account = self.new_account(platform)
        model = self.models[platform]
        stay = self.rng.expovariate(1 / model.prospect_mean_stay_days)
        self.prospect_days.setdefault(day, []).append(account)  # always active on arrival
        d = day + 1
        while d <= day + stay and d < self.config.days:
            if self.rng.random() < model.prospect_daily_activity:
                self.prospect_days.setdefault(d, []).append(account)
            d += 1

    def join(self, account: _Account, group: _Group, at_ms: int, channel: str,
             inviter_user_id: str | None = None) -> None:
        """Record and emit a join; the first one makes the account a member."""
        account.joined[group.group_id] = at_ms
        account.blocked_until.pop(group.group_id, None)
        if account.first_join_ms is None:
            self.make_member(account, at_ms)
        self.emit_event(account, "join", at_ms, group_id=group.group_id, channel=channel,
                        inviter_user_id=inviter_user_id)

    def found_group(self, group: _Group) -> None:
        owner = self.new_account(group.platform)
        owner.owner = True
        day_start = self.day_start[group.created_day]
        self.emit_links(owner, group.created_ms, day_start)
        self.join(owner, group, group.created_ms, group.origin_channel)

    # -- behaviour -----------------------------------------------------------------------------

    def poisson(self, mean: float) -> int:
        # Knuth's method; the means here are small.
        limit, k, p = math.exp(-mean), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def weighted(self, options: tuple[tuple[str, float], ...]) -> str:
        values, weights = zip(*options)
        return self.rng.choices(values, weights)[0]

    def content_join_delay(self) -> int:
        """Like -> join for a prospect: minutes, hours or days, always inside the 7 days."""
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            delay = int(rng.lognormvariate(math.log(10 * MINUTE_MS), 1.0))
        elif r < 0.75:
            delay = rng.randrange(HOUR_MS, DAY_MS)
        else:
            delay = rng.randrange(DAY_MS, EDGE_DELAY_MS)
        return min(max(delay, 2 * SECOND_MS), EDGE_DELAY_MS)

    def invite_join_delay(self) -> int:
        """Invitation -> join: mostly hours; a few exactly 6 d 23 h 59 min."""
        rng = self.rng
        r = rng.random()
        if r < _EDGE_JOIN_SHARE:
            return EDGE_DELAY_MS
        if r < 0.5:
            delay = int(rng.lognormvariate(math.log(30 * MINUTE_MS), 1.2))
        elif r < 0.9:
            delay = rng.randrange(HOUR_MS, 2 * DAY_MS)
        else:
            delay = rng.randrange(2 * DAY_MS, EDGE_DELAY_MS)
        return min(max(delay, 2 * SECOND_MS), EDGE_DELAY_MS)

    def propagation_latency(self) -> int:
        """Kuaishou like -> WeChat share of the same content: mostly seconds to minutes."""
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            latency = int(rng.lognormvariate(math.log(20 * SECOND_MS), 1.0))
        elif r < 0.85:
            latency = int(rng.lognormvariate(math.log(10 * MINUTE_MS), 1.0))
        else:
            latency = rng.randrange(HOUR_MS, DAY_MS - MINUTE_MS)
        return min(max(latency, SECOND_MS), DAY_MS - MINUTE_MS)

    def member_join_time(self, account: _Account, like_ms: int, day: int) -> int:
        """Where a member's own conversion may put the join: later the same day (already an
        active day) or on one of their active days within 7 days - never on a silent day."""
        rng = self.rng
        horizon = like_ms + EDGE_DELAY_MS
        later: list[int] = []
        for d in account.active_days[bisect.bisect_right(account.active_days, day):]:
            if self.day_start[d] >= horizon:
                break
            later.append(d)
        if later and rng.random() < 0.6:
            d = rng.choice(later)
            start = self.day_start[d]
            end = min(self.day_start[d + 1] - SECOND_MS, horizon)
            return start + rng.randrange(end - start)
        end = self.day_start[day + 1] - SECOND_MS
        return like_ms + SECOND_MS + rng.randrange(max(1, end - like_ms - SECOND_MS))

    def own_groups(self, account: _Account, at_ms: int, day: int) -> list[_Group]:
        """Alive groups the account had joined before ``at_ms`` (pending joins excluded)."""
        groups = []
        for group_id, joined_at in account.joined.items():  # dict: insertion order, deterministic
            group = self.group_by_id[group_id]
            if joined_at < at_ms and group.alive_on(day):
                groups.append(group)
        return groups

    def pick_content(self, account: _Account, group: _Group | None) -> str | None:
        """A content id this account has not liked yet (None if the group's are used up)."""
        rng = self.rng
        if group is not None:
            content = rng.choice(group.contents)
            return None if content in account.liked else content
        prefix = "ksv" if account.platform == "kuaishou" else "wxa"
        while True:
            content = f"{prefix}-{rng.randrange(10_000_000):07d}"
            if content not in account.liked:
                return content

    def like(self, account: _Account, at_ms: int, day: int, alive: list[_Group], model: _PlatformModel) -> None:
        rng = self.rng
        group: _Group | None = None
        attempt = False
        if alive and rng.random() < model.promoted_like_share:
            own = self.own_groups(account, at_ms, day)
            if own and rng.random() < model.own_group_like_share:
                group = rng.choice(own)  # a like after joining: no attempt
            else:
                candidate = rng.choice(alive)
                joined_at = account.joined.get(candidate.group_id)
                if joined_at is not None:
                    # Member already (a like after joining) or join pending (blocked: the like
                    # would be an attempt converted by a join it did not cause).
                    group = candidate if joined_at < at_ms else None
                elif account.blocked_until.get(candidate.group_id, 0) > at_ms:
                    group = None  # an open attempt for this group: another would share its join
                elif account.first_join_ms is not None and at_ms <= account.first_join_ms:
                    group = None  # first join pending: a new attempt could not be placed
                else:
                    group, attempt = candidate, True
        content = self.pick_content(account, group) if group is not None else None
        if content is None:
            group, attempt = None, False
            content = self.pick_content(account, None)
        account.liked.add(content)
        self.emit_event(account, "like", at_ms, content_id=content, group_id=group.group_id if group else None)
        if attempt:
            self.content_attempt(account, group, content, at_ms, day, model)
        if account.sharer_openid is not None and rng.random() < self.config.propagation_rate:
            sharer = _Account(account.sharer_openid, "wechat")
            self.emit_event(sharer, "share", at_ms + self.propagation_latency(),
                            content_id=content, target_platform="wechat")

    def content_attempt(self, account: _Account, group: _Group, content: str, like_ms: int,
                        day: int, model: _PlatformModel) -> None:
        rng = self.rng
        if rng.random() >= model.content_conversion:
            # Closed for a week and a day so that no later attempt's join falls in its window.
            account.blocked_until[group.group_id] = like_ms + WEEK_MS + DAY_MS
            return
        if account.first_join_ms is None:
            join_ms = self.snap(like_ms + self.content_join_delay())
        else:
            join_ms = self.member_join_time(account, like_ms, day)
        if model.platform == "kuaishou":
            if content.startswith("ksl"):
                channel = "live_stream"
            else:
                channel = self.weighted((("content", 0.75), ("search", 0.2), ("other", 0.05)))
        else:
            channel = self.weighted((("official_account", 0.55), ("mini_program", 0.3), ("qr_code", 0.15)))
        self.join(account, group, join_ms, channel)

    def invite(self, account: _Account, at_ms: int, day: int, model: _PlatformModel) -> bool:
        """One invitation to one of the member's groups; False if none can take one now."""
        rng = self.rng
        # Spaced per (inviter, group): the previous invitation's joins have all happened, so
        # none of them can be attributed to this newer invitation.
        candidates = [
            g for g in self.own_groups(account, at_ms, day)
            if account.invite_settled_ms.get(g.group_id, -1) < at_ms
        ]
        if not candidates:
            return False
        group = rng.choice(candidates)
        account.invite_settled_ms[group.group_id] = at_ms
        target = "wechat" if model.platform == "wechat" else self.weighted((("kuaishou", 0.5), ("wechat", 0.5)))
        self.emit_event(account, "share", at_ms, content_id=f"card-{group.group_id}", group_id=group.group_id,
                        target_platform=target)
        if rng.random() >= model.invite_conversion:
            return True
        invitees = 2 if rng.random() < _TWO_JOIN_SHARE else 1
        for _ in range(invitees):
            delay = self.invite_join_delay()
            join_ms = at_ms + delay if delay == EDGE_DELAY_MS else self.snap(at_ms + delay)
            if join_ms >= self.window_end:
                continue
            settled = account.invite_settled_ms.get(group.group_id, -1)
            account.invite_settled_ms[group.group_id] = max(settled, join_ms)
            invitee = self.new_invitee(model.platform)
            self.emit_links(invitee, join_ms, at_ms)
            self.join(invitee, group, join_ms, self.weighted(model.invite_channels), inviter_user_id=account.user_id)
        return True

    def new_invitee(self, platform: str) -> _Account:
        # Invitees are always new accounts: none has an open content attempt a join could convert.
        if platform == "wechat" and self.wechat_invitee_queue:
            return self.wechat_invitee_queue.pop(0)
        return self.new_account(platform)

    def active_day(self, account: _Account, day: int, alive: list[_Group], *, member: bool) -> None:
        """All events of one account on one of its active days."""
        rng = self.rng
        model = self.models[account.platform]
        extra = model.member_extra_likes if member else model.prospect_extra_likes
        kinds = ["like"] * (1 + self.poisson(extra)) + ["share"] * self.poisson(model.shares_per_day * (1 if member else 0.5))
        if member:
            if account.owner:
                p_invite = model.owner_invite_probability
            else:
                age = day - (account.cohort_day or day)
                p_invite = model.member_invite_early * math.exp(-age / model.member_invite_decay_days)
                p_invite += model.member_invite_late
            if rng.random() < p_invite:
                kinds.append("invite")
        rng.shuffle(kinds)
        times = sorted(self.time_in_day(day) for _ in kinds)
        if account.pending_links:
            self.emit_links(account, times[0], self.day_start[day])
        for kind, at_ms in zip(kinds, times):
            if kind == "like":
                self.like(account, at_ms, day, alive, model)
                continue
            if kind == "invite" and self.invite(account, at_ms, day, model):
                continue
            # A plain share (or an invitation no group could take): content, no group_id.
            own = self.own_groups(account, at_ms, day) if account.joined else []
            group = rng.choice(own) if own and rng.random() < 0.3 else None
            content = rng.choice(group.contents) if group else self.pick_content(account, None)
            self.emit_event(account, "share", at_ms, content_id=content,
                            target_platform=self.weighted(model.share_targets))

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> Iterator[Message]:
        self.plan()
        for day in range(self.config.days):
            for group in self.groups_by_day.get(day, []):
                self.found_group(group)
            for platform in self.arrivals.get(day, []):
                self.arrive_prospect(platform, day)
            alive = {p: [g for g in gs if g.alive_on(day)] for p, gs in self.groups.items()}
            for account in self.member_days.pop(day, []):
                self.active_day(account, day, alive[account.platform], member=True)
            for account in self.prospect_days.pop(day, []):
                first_join = account.first_join_ms
                if first_join is not None and day > self.day_of(min(first_join, self.window_end - 1)):
                    continue  # a member now: only their member days may carry events
                self.active_day(account, day, alive[account.platform], member=False)
            # Everything queued later has an emit time >= the next midnight: safe to release.
            next_midnight = self.day_start[day + 1]
            while self.heap and self.heap[0][0] < next_midnight:
                yield heapq.heappop(self.heap)[2]
        while self.heap:
            yield heapq.heappop(self.heap)[2]
