"""Where every layer lives under the warehouse folder, and which gold dates are published.

    bronze/events/topic=T/partition=P/<first>-<last>.parquet     written by the loader: the
    bronze/identity/topic=T/partition=P/<first>-<last>.parquet   records of offsets first..last
    quarantine/topic=T/partition=P/<first>-<last>.parquet        of partition P that belong there
    bronze/*/topic=T/partition=P/_commits/<first>.json           the range's commit (core.loader_log)
    silver/events/<build>/_date=D/*.parquet          silver events of date D, as one run wrote them
                                                     (with a hash of each event_id: jobs.silver)
    silver/identity_map/<build>/*.parquet            the identity map, as one run wrote it
    silver/_versions/<n>.json                        silver version n: the files of every date, and
                                                     how far into bronze it reads (core.silver_log)
    staging/silver/D.json                            the bronze and silver version of the run of D
    gold/<table>/as_of_date=D/build=B/*.parquet      one build of a gold table (written once)
    staging/gold/D.json                              the build of D waiting for its gate
    published/D.json                                 the publication manifest: the files of
                                                     all eight tables of D, and row counts
    pipeline_runs/<run id>.json                      one record per pipeline run

Offsets in bronze file names are zero-padded to 20 digits so that names sort in offset order.
This module only names places; reading and writing happen in the parts that own them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from core.storage import Store, as_store

# Folders of the tables the loader writes, relative to the warehouse.
BRONZE_EVENTS = "bronze/events"
BRONZE_IDENTITY = "bronze/identity"
QUARANTINE = "quarantine"
PUBLISHED = "published"
PIPELINE_RUNS = "pipeline_runs"
# Silver files, written once per build (core.silver_log names the live ones).
SILVER_EVENTS = "silver/events"
SILVER_IDENTITY_MAP = "silver/identity_map"
SILVER_SUMMARY = "silver/summary"
SILVER_TABLES = (SILVER_EVENTS, SILVER_IDENTITY_MAP, SILVER_SUMMARY)

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


def gold_build_key(table: str, as_of_date: date, build: str) -> str:
    """Where one build of a gold table for ``as_of_date`` is written (never moved afterwards)."""
    return f"gold/{table}/as_of_date={as_of_date.isoformat()}/build={build}"


def staging_key(as_of_date: date) -> str:
    """The record of the gold build of ``as_of_date`` that waits for its gate."""
    return f"staging/gold/{as_of_date.isoformat()}.json"


def publication_key(as_of_date: date) -> str:
    """The manifest whose presence makes ``as_of_date``'s gold visible to analysts."""
    return f"{PUBLISHED}/{as_of_date.isoformat()}.json"


def run_key(run_id: str) -> str:
    """The record of one pipeline run (``pipeline_runs``), named by its run id."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{PIPELINE_RUNS}/{safe}.json"


def published_dates(warehouse: Path | Store) -> list[date]:
    """Logical dates whose gold tables passed their gate and were published, oldest first."""
    store = as_store(warehouse)
    names = (key.rsplit("/", 1)[1] for key in store.list(PUBLISHED))
    return sorted(date.fromisoformat(n.removesuffix(".json")) for n in names if n.endswith(".json") and not n.startswith("."))
