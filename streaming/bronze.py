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
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core import tables
from core.contract import EVENT_FIELDS, IDENTITY_FIELDS
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE, OffsetRange, partition_dir

ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}
_CONTRACT_FIELDS = frozenset(EVENT_FIELDS) | frozenset(IDENTITY_FIELDS)


def arrow_schema(table: tables.Table) -> pa.Schema:
    """The Parquet schema the loader writes ``table`` with.

    The contract's fields are stored as they arrived, so the file format never refuses one:
    a missing required field is the bronze gate's to judge, not a write error that would stop
    the loader. What the loader fills in itself (Kafka coordinates, ingest time, the
    quarantine's reason) is NOT NULL in the file too.
    """
    return pa.schema(
        pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable or c.name in _CONTRACT_FIELDS)
        for c in table.columns
    )


BRONZE_EVENTS_SCHEMA = arrow_schema(tables.BRONZE_EVENTS)
BRONZE_IDENTITY_SCHEMA = arrow_schema(tables.BRONZE_IDENTITY)
QUARANTINE_SCHEMA = arrow_schema(tables.QUARANTINE)
SCHEMAS = {BRONZE_EVENTS: BRONZE_EVENTS_SCHEMA, BRONZE_IDENTITY: BRONZE_IDENTITY_SCHEMA, QUARANTINE: QUARANTINE_SCHEMA}


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
    found = (OffsetRange.from_file_name(entry.name) for entry in os.scandir(directory))
    return sorted((r for r in found if r is not None), key=lambda r: r.first)


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
