"""Bronze and quarantine storage: Parquet files named by topic, partition and offset range.

A file ``<table>/topic=<t>/partition=<p>/<first>-<last>.parquet`` holds exactly the records of
offsets ``first..last`` of that partition that belong to the table. Files are published
atomically (write to a temporary name, fsync, rename, fsync the directory), so a reader sees a
whole file or none.

Per partition and batch the loader writes the quarantine file first and the bronze file last,
always, even with zero rows: the bronze file is the durable marker that the range is done.
After a crash, :func:`recover_partition` finds the last marked offset and removes quarantine
files of a range that never got its marker; the loader then resumes after the marked offset,
whatever Kafka's committed offset says. A replay therefore never doubles or loses a record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engagement.contract import EVENT_FIELDS, IDENTITY_FIELDS

_KAFKA_COLUMNS = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_key", pa.string()),
    pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("ingest_time", pa.timestamp("us", tz="UTC"), nullable=False),
]

BRONZE_EVENTS_SCHEMA = pa.schema(
    [pa.field(name, pa.int64() if name == "schema_version" else pa.string()) for name in EVENT_FIELDS]
    + [pa.field("extra", pa.string())]
    + _KAFKA_COLUMNS
)
BRONZE_IDENTITY_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in IDENTITY_FIELDS] + [pa.field("extra", pa.string())] + _KAFKA_COLUMNS
)
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("kafka_key", pa.binary()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("value", pa.binary()),
        pa.field("error_class", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("ingest_time", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

BRONZE_EVENTS = "bronze/events"
BRONZE_IDENTITY = "bronze/identity"
QUARANTINE = "quarantine"

_RANGE_FILE = re.compile(r"^(\d{20})-(\d{20})\.parquet$")


@dataclass(frozen=True)
class OffsetRange:
    first: int
    last: int

    @property
    def file_name(self) -> str:
        return f"{self.first:020d}-{self.last:020d}.parquet"


def partition_dir(warehouse: Path, table: str, topic: str, partition: int) -> Path:
    return warehouse / table / f"topic={topic}" / f"partition={partition}"


def bronze_table_for(topic: str, identity_topic: str) -> str:
    return BRONZE_IDENTITY if topic == identity_topic else BRONZE_EVENTS


def write_atomically(table: pa.Table, directory: Path, offsets: OffsetRange) -> Path:
    """Write ``table`` as ``directory/<first>-<last>.parquet``, durably and atomically."""
    _make_durable_dirs(directory)
    final = directory / offsets.file_name
    tmp = directory / f".{offsets.file_name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as sink:
        pq.write_table(table, sink, compression="zstd")
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def _make_durable_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents, and make their entries durable.

    fsync of the file and of its directory is not enough for the first file of a partition: if
    the directory's own entry in its parent is lost in a power cut, the file goes with it, after
    its offsets were committed.
    """
    if directory.is_dir():
        return
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    directory.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(created.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ranges_in(directory: Path) -> list[OffsetRange]:
    """The offset ranges of the published files in one partition directory, in order."""
    if not directory.is_dir():
        return []
    found = []
    for entry in os.scandir(directory):
        match = _RANGE_FILE.match(entry.name)
        if match:
            found.append(OffsetRange(int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda r: r.first)


def recover_partition(warehouse: Path, bronze_table: str, topic: str, partition: int) -> int | None:
    """Make one partition's files consistent after a crash; return the next offset to read.

    Returns None when nothing of the partition has been written yet (Kafka's committed offset,
    or the reset policy, decides). Removes temporary files and quarantine files of a range
    whose bronze marker was never written: the replay writes them again.
    """
    bronze_dir = partition_dir(warehouse, bronze_table, topic, partition)
    quarantine_dir = partition_dir(warehouse, QUARANTINE, topic, partition)
    for directory in (bronze_dir, quarantine_dir):
        if directory.is_dir():
            for entry in os.scandir(directory):
                if entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
    marked = ranges_in(bronze_dir)
    last = marked[-1].last if marked else None
    for orphan in ranges_in(quarantine_dir):
        if last is None or orphan.first > last:
            (quarantine_dir / orphan.file_name).unlink()
    return None if last is None else last + 1
