"""Silver's version log: which files make up silver, and how far into bronze it has read.

Silver is one table of events partitioned by ``event_date`` and one ``identity_map``, updated
by every daily run from the bronze that arrived since the last one (DESIGN section 7). Each
update writes new files for the dates it touched only, then commits a new version by creating
``silver/_versions/<n>.json`` exclusively (as the loader commits bronze ranges): of two runs
that update silver at once exactly one commits version n; the other fails and is run again.

A version names

* ``offsets``: per bronze table and Kafka partition, the first offset not yet in silver (the
  watermark); the next run reads the bronze commits from there on;
* ``events``: per ``event_date`` (``unparsed`` for first copies whose time Spark cannot read),
  the files holding that date, their row count, and the files of that date's history summary
  (``summary``: what gold's tables computed whole read instead of the events);
* ``identity_map``: its files;
* ``changes``: what this version changed, for gold to recompute only what it can reach: the
  event dates whose rows changed, and the dates of events by accounts whose person changed.

The silver gate records each version it passed (``silver/_validated/<n>``) and checks, for
the next one, everything changed since the newest version it passed: a version whose gate
failed is checked again by every later run until one passes, so its rows never reach gold
through a later run. Files no version names any more are left to ``engagement prune``. This
module only reads and writes the log; ``engagement.pipeline`` builds the versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

from core.errors import UserError
from core.storage import Store

VERSIONS = "silver/_versions"
VALIDATED = "silver/_validated"
UNPARSED = "unparsed"


class SilverConflict(UserError):
    """Another run committed the same silver version first."""


@dataclass(frozen=True)
class Changes:
    """What one or more silver versions changed: event dates and identity-affected dates."""

    dates: frozenset[date] = frozenset()
    identity_dates: frozenset[date] = frozenset()
    everything: bool = False  # a full refresh: nothing earlier can be carried forward

    def __or__(self, other: Changes) -> Changes:
        return Changes(self.dates | other.dates, self.identity_dates | other.identity_dates, self.everything or other.everything)

    def to_json(self) -> dict[str, Any]:
        return {
            "dates": sorted(d.isoformat() for d in self.dates),
            "identity_dates": sorted(d.isoformat() for d in self.identity_dates),
            "everything": self.everything,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Changes:
        return cls(
            frozenset(map(date.fromisoformat, d["dates"])),
            frozenset(map(date.fromisoformat, d["identity_dates"])),
            bool(d["everything"]),
        )


@dataclass(frozen=True)
class SilverVersion:
    number: int
    timezone: str
    offsets: dict[str, dict[str, int]]  # bronze table -> "topic/partition" -> next offset
    events: dict[str, dict[str, Any]]  # "YYYY-MM-DD" or UNPARSED -> {"files": [...], "rows": n}
    identity_map: list[str]
    changes: Changes = field(default_factory=Changes)
    created_at: str = ""
    # jobs.privacy.fingerprint of the key user ids were pseudonymised with (None: not).
    key_fingerprint: str | None = None
    # jobs.silver.ID_HASH of each of jobs.silver.ID_HASH_PROBES, by the Spark that hashed the
    # event ids of every file named here; None when not known (files of a version from before it
    # was kept, or of two Sparks).
    id_hash_check: tuple[int, ...] | None = None

    @property
    def event_dates(self) -> list[date]:
        return sorted(date.fromisoformat(k) for k in self.events if k != UNPARSED)

    def event_files(self, dates=None, *, unparsed: bool = False) -> list[str]:
        """The files of ``dates`` (all dates when None); those of unparsed events only if asked."""
        wanted = None if dates is None else {d.isoformat() for d in dates}
        return [
            f
            for key, part in sorted(self.events.items())
            if (key == UNPARSED and unparsed) or (key != UNPARSED and (wanted is None or key in wanted))
            for f in part["files"]
        ]

    def summary_files(self, dates) -> list[str] | None:
        """The history-summary files of ``dates`` (see ``jobs.gold_incremental.history_summary``),
        or None when a date has none (a version written before summaries were kept)."""
        parts = [self.events.get(d.isoformat()) for d in dates]
        if any(part is None or "summary" not in part for part in parts):
            return None
        return [f for part in parts for f in part["summary"]]

    def rows(self, dates=None) -> int:
        wanted = None if dates is None else {d.isoformat() for d in dates}
        return sum(p["rows"] for k, p in self.events.items() if k != UNPARSED and (wanted is None or k in wanted))

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": self.number,
                "timezone": self.timezone,
                "key_fingerprint": self.key_fingerprint,
                "id_hash_check": None if self.id_hash_check is None else list(self.id_hash_check),
                "created_at": self.created_at,
                "offsets": self.offsets,
                "changes": self.changes.to_json(),
                "identity_map": self.identity_map,
                "events": self.events,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SilverVersion:
        d = json.loads(data)
        return cls(
            number=int(d["version"]),
            timezone=d["timezone"],
            offsets=d["offsets"],
            events=d["events"],
            identity_map=d["identity_map"],
            changes=Changes.from_json(d["changes"]),
            created_at=d.get("created_at", ""),
            key_fingerprint=d.get("key_fingerprint"),
            id_hash_check=None if d.get("id_hash_check") is None else tuple(d["id_hash_check"]),
        )


def version_key(number: int) -> str:
    return f"{VERSIONS}/{number:010d}.json"


def version_numbers(store: Store) -> list[int]:
    return _numbers(store, VERSIONS, ".json")


def _numbers(store: Store, folder: str, suffix: str) -> list[int]:
    """The numbers ``<n><suffix>`` of the objects in ``folder``, in order (others ignored)."""
    names = (k.rsplit("/", 1)[1] for k in store.list(folder))
    return sorted(int(n.removesuffix(suffix)) for n in names if n.endswith(suffix) and n.removesuffix(suffix).isdigit())


def read_version(store: Store, number: int) -> SilverVersion:
    try:
        return SilverVersion.from_json(store.get(version_key(number)))
    except FileNotFoundError:
        raise UserError(f"silver version {number} is missing from {store.url(VERSIONS)}: run `engagement run --full-refresh`") from None


def head(store: Store) -> SilverVersion | None:
    """The newest silver version, or None before the first run."""
    numbers = version_numbers(store)
    return read_version(store, numbers[-1]) if numbers else None


def commit(store: Store, version: SilverVersion) -> SilverVersion:
    """Create ``version`` (numbered one past the head the run started from), exclusively."""
    version = replace(version, created_at=datetime.now(timezone.utc).isoformat())
    if not store.put_if_absent(version_key(version.number), version.to_json()):
        raise SilverConflict(
            f"another run committed silver version {version.number} while this one was building it"
        )
    return version


def changes_since(store: Store, after: int, upto: int) -> Changes:
    """Everything versions ``after+1 .. upto`` changed."""
    total = Changes()
    for number in range(after + 1, upto + 1):
        total = total | read_version(store, number).changes
    return total


def mark_validated(store: Store, number: int) -> None:
    """Record that the silver gate passed version ``number`` (and so everything before it)."""
    store.put(f"{VALIDATED}/{number:010d}", b"")


def last_validated(store: Store) -> int | None:
    """The newest version the silver gate passed, or None."""
    passed = _numbers(store, VALIDATED, "")
    return passed[-1] if passed else None


def unvalidated_changes(store: Store, version: SilverVersion) -> Changes:
    """What the silver gate has to check for ``version``: everything changed since the newest
    version it passed (all of it when it never passed one), or ``version``'s own changes when
    that is the version itself or a later one (a gate run again, a backfill's older version)."""
    passed = last_validated(store)
    if passed is not None and passed >= version.number - 1:
        return version.changes
    return changes_since(store, passed or 0, version.number)
