"""Where every layer lives under the warehouse folder, and which gold dates are published.

    bronze/events/topic=T/partition=P/<first>-<last>.parquet     written by the loader: the
    bronze/identity/topic=T/partition=P/<first>-<last>.parquet   records of offsets first..last
    quarantine/topic=T/partition=P/<first>-<last>.parquet        of partition P that belong there
    bronze/*/topic=T/partition=P/_commits/<first>.json           the range's commit (core.loader_log)
    silver/<table>/as_of_date=D                      a run's silver
    staging/gold/<table>/as_of_date=D                gold before its quality gate
    gold/<table>/as_of_date=D                        published gold (moved from staging)
    published/D.json                                 the publication record (row counts)
    pipeline_runs/<run id>.json                      one record per pipeline run

Offsets in bronze file names are zero-padded to 20 digits so that names sort in offset order.
This module only names places; reading and writing happen in the parts that own them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

# Folders of the tables the loader writes, relative to the warehouse.
BRONZE_EVENTS = "bronze/events"
BRONZE_IDENTITY = "bronze/identity"
QUARANTINE = "quarantine"

_RANGE_FILE = re.compile(r"^(\d{20})-(\d{20})\.parquet$")


@dataclass(frozen=True)
class OffsetRange:
    """Offsets ``first..last`` (inclusive) of one partition: the name of one bronze file."""

    first: int
    last: int

    @property
    def file_name(self) -> str:
        return f"{self.first:020d}-{self.last:020d}.parquet"

    @classmethod
    def from_file_name(cls, name: str) -> OffsetRange | None:
        """The range a file name stands for, or None for any other file (temporary, foreign)."""
        match = _RANGE_FILE.match(name)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


def bronze_table_for(topic: str, identity_topic: str) -> str:
    """The bronze folder of the valid records of ``topic``."""
    return BRONZE_IDENTITY if topic == identity_topic else BRONZE_EVENTS


def partition_key(table: str, topic: str, partition: int) -> str:
    """The folder of one Kafka partition's files of a loader table, relative to the warehouse."""
    return f"{table}/topic={topic}/partition={partition}"


def partition_dir(warehouse: Path, table: str, topic: str, partition: int) -> Path:
    """:func:`partition_key` in a local warehouse."""
    return warehouse / partition_key(table, topic, partition)


def _date_dir(root: Path, table: str, as_of_date: date) -> Path:
    return root / table / f"as_of_date={as_of_date.isoformat()}"


def silver_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "silver", table, as_of_date)


def staging_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "staging" / "gold", table, as_of_date)


def gold_path(warehouse: Path, table: str, as_of_date: date) -> Path:
    return _date_dir(warehouse / "gold", table, as_of_date)


def published_dir(warehouse: Path) -> Path:
    return warehouse / "published"


def publication_record(warehouse: Path, as_of_date: date) -> Path:
    """The file whose presence makes ``as_of_date``'s gold visible to analysts."""
    return published_dir(warehouse) / f"{as_of_date.isoformat()}.json"


def pipeline_runs_dir(warehouse: Path) -> Path:
    return warehouse / "pipeline_runs"


def run_record(warehouse: Path, run_id: str) -> Path:
    """The record of one pipeline run (``pipeline_runs``), named by its run id."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return pipeline_runs_dir(warehouse) / f"{safe}.json"


def published_dates(warehouse: Path) -> list[date]:
    """Logical dates whose gold tables passed their gate and were published, oldest first."""
    directory = published_dir(warehouse)
    if not directory.is_dir():
        return []
    return sorted(date.fromisoformat(p.stem) for p in directory.glob("*.json"))
