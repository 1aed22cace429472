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
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE, OffsetRange, partition_dir

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

    def to_json(self) -> str:
        return json.dumps(
            {"first": self.first, "last": self.last, "bronze_rows": self.bronze_rows, "quarantined": self.quarantined}
        )


def commit_dir(warehouse: Path, bronze_table: str, topic: str, partition: int) -> Path:
    """Where one partition's commits live (beside its bronze files)."""
    return partition_dir(warehouse, bronze_table, topic, partition) / COMMITS


def commit_name(first: int) -> str:
    return f"{first:020d}.json"


def read_commit(path: Path) -> Commit:
    data = json.loads(path.read_text())
    return Commit(int(data["first"]), int(data["last"]), int(data["bronze_rows"]), int(data["quarantined"]))


def commits(warehouse: Path, bronze_table: str, topic: str, partition: int) -> list[Commit]:
    """One partition's committed ranges, in offset order."""
    directory = commit_dir(warehouse, bronze_table, topic, partition)
    if not directory.is_dir():
        return []
    names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".json") and not e.name.startswith("."))
    return [read_commit(directory / name) for name in names]


def next_offset(warehouse: Path, bronze_table: str, topic: str, partition: int) -> int | None:
    """The first offset not yet committed, or None when nothing of the partition is."""
    found = commits(warehouse, bronze_table, topic, partition)
    return found[-1].last + 1 if found else None


def covered_offsets(warehouse: Path) -> int:
    """Offsets committed over all partitions: the loaders' durable progress."""
    return sum(
        c.last - c.first + 1
        for table in (BRONZE_EVENTS, BRONZE_IDENTITY)
        for topic, partition in partitions(warehouse, table)
        for c in commits(warehouse, table, topic, partition)
    )


def partitions(warehouse: Path, table: str) -> Iterator[tuple[str, int]]:
    """The (topic, partition) pairs that have a folder under a loader table."""
    root = warehouse / table
    if not root.is_dir():
        return
    for directory in sorted(root.glob("topic=*/partition=*")):
        yield directory.parent.name.split("=", 1)[1], int(directory.name.split("=", 1)[1])


def committed_files(warehouse: Path, table: str) -> list[Path]:
    """The data files of ``table`` (a bronze table, or quarantine) that belong to committed ranges.

    A range with no rows for a table has no file in it; quarantine files are committed by their
    topic's bronze log.
    """
    out = []
    for topic, partition in partitions(warehouse, table):
        log_table = _bronze_table_of(warehouse, topic, partition) if table == QUARANTINE else table
        if log_table is None:
            continue
        directory = partition_dir(warehouse, table, topic, partition)
        for commit in commits(warehouse, log_table, topic, partition):
            rows = commit.quarantined if table == QUARANTINE else commit.bronze_rows
            if rows:
                out.append(directory / commit.offsets.file_name)
    return out


def _bronze_table_of(warehouse: Path, topic: str, partition: int) -> str | None:
    """The bronze table whose log commits ``topic``'s quarantine files."""
    for table in (BRONZE_EVENTS, BRONZE_IDENTITY):
        if commit_dir(warehouse, table, topic, partition).is_dir():
            return table
    return None
