"""The loader's commit log: which offset ranges of each partition are in bronze and quarantine.

The loader writes a range's data files first (quarantine and bronze, each named by the range)
and then commits the range by creating ``_commits/<first>.json`` in the partition's bronze
folder, exclusively: the file system refuses a second commit at the same first offset. Only
committed ranges exist for readers; a data file without a commit (a crash before the commit,
or a loader that lost its partitions while it was frozen and wrote after thawing) is ignored
and later removed. So two loaders that both believe they own a partition can at worst both
write data files; exactly one of them commits each range, and the other learns it has lost.

This module only reads the log (readers and the loader's recovery share it); writing it is
``streaming.bronze``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from core.contract import IDENTITY_TOPIC
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE, OffsetRange, bronze_table_for, partition_key
from core.storage import Store

COMMITS = "_commits"


@dataclass(frozen=True)
class Commit:
    """A committed range of one partition, with the rows it put in bronze and in quarantine."""

    first: int
    last: int
    bronze_rows: int
    quarantined: int

    @property
    def offsets(self) -> OffsetRange:
        return OffsetRange(self.first, self.last)

    def to_json(self) -> bytes:
        return json.dumps(
            {"first": self.first, "last": self.last, "bronze_rows": self.bronze_rows, "quarantined": self.quarantined}
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Commit:
        d = json.loads(data)
        return cls(int(d["first"]), int(d["last"]), int(d["bronze_rows"]), int(d["quarantined"]))


def commit_prefix(bronze_table: str, topic: str, partition: int) -> str:
    """Where one partition's commits live (beside its bronze files)."""
    return f"{partition_key(bronze_table, topic, partition)}/{COMMITS}"


def commit_key(bronze_table: str, topic: str, partition: int, first: int) -> str:
    return f"{commit_prefix(bronze_table, topic, partition)}/{first:020d}.json"


def commits(store: Store, bronze_table: str, topic: str, partition: int) -> list[Commit]:
    """One partition's committed ranges, in offset order."""
    keys = [k for k in store.list(commit_prefix(bronze_table, topic, partition)) if _is_commit(k)]
    return [Commit.from_json(store.get(k)) for k in keys]


def next_offset(store: Store, bronze_table: str, topic: str, partition: int) -> int | None:
    """The first offset not yet committed, or None when nothing of the partition is."""
    found = commits(store, bronze_table, topic, partition)
    return found[-1].last + 1 if found else None


def covered_offsets(store: Store) -> int:
    """Offsets committed over all partitions: the loaders' durable progress."""
    return sum(
        c.last - c.first + 1
        for table in (BRONZE_EVENTS, BRONZE_IDENTITY)
        for topic, partition in partitions(store, table)
        for c in commits(store, table, topic, partition)
    )


def partitions(store: Store, table: str) -> Iterator[tuple[str, int]]:
    """The (topic, partition) pairs that have files under a loader table."""
    seen = set()
    for key in store.list(table):
        parts = key[len(table) + 1 :].split("/")
        if len(parts) >= 3 and parts[0].startswith("topic=") and parts[1].startswith("partition="):
            seen.add((parts[0].split("=", 1)[1], int(parts[1].split("=", 1)[1])))
    yield from sorted(seen)


def committed_files(store: Store, table: str) -> list[str]:
    """The keys of ``table``'s data files (a bronze table, or quarantine) in committed ranges.

    A range with no rows for a table has no file in it; quarantine files are committed by their
    topic's bronze log.
    """
    out = []
    for topic, partition in partitions(store, table):
        log_table = bronze_table_for(topic, IDENTITY_TOPIC) if table == QUARANTINE else table
        for commit in commits(store, log_table, topic, partition):
            if commit.quarantined if table == QUARANTINE else commit.bronze_rows:
                out.append(f"{partition_key(table, topic, partition)}/{commit.offsets.file_name}")
    return out


def _is_commit(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.endswith(".json") and not name.startswith(".")
