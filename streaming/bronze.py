"""Bronze and quarantine storage: Parquet files named by topic, partition and offset range.

A file ``<table>/topic=<t>/partition=<p>/<first>-<last>.parquet`` holds exactly the records of
offsets ``first..last`` of that partition that belong to the table. Files are published
atomically (write to a temporary name, fsync, rename, fsync the directory), so a reader sees a
whole file or none.

Per partition and batch the loader writes the quarantine file and the bronze file (each only
when it has rows), then commits the range in the partition's commit log (``core.loader_log``)
by creating the commit exclusively: of two loaders that wrote the same range (one of them
evicted from the group while frozen, and thawed after another took its partitions) exactly one
commits; the other removes what it wrote. Readers and recovery see committed ranges only, so a
crash or a stale writer at any moment neither loses nor doubles a record.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core import tables
from core.contract import EVENT_FIELDS, IDENTITY_FIELDS
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE, OffsetRange, partition_dir
from core.loader_log import Commit, commit_dir, commit_name, commits, read_commit

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
    """The offset ranges of the data files in one partition directory, committed or not, in order."""
    if not directory.is_dir():
        return []
    found = (OffsetRange.from_file_name(entry.name) for entry in os.scandir(directory))
    return sorted((r for r in found if r is not None), key=lambda r: r.first)


def publish_range(
    warehouse: Path,
    bronze_table: str,
    topic: str,
    partition: int,
    offsets: OffsetRange,
    rows: pa.Table,
    quarantined: pa.Table,
) -> Commit:
    """Write one range's files and commit it; return the commit that now holds ``offsets.first``.

    That commit is this range when it ends at ``offsets.last`` (another loader may have
    committed the identical range: the same records, so either copy of the files is right).
    Otherwise another loader committed a different range at the same first offset first: this
    call removes the files it wrote and the caller must not count the range as published.
    Raises FileNotFoundError when another loader's recovery removed a temporary file of this
    call meanwhile (it owns the partition now): nothing was committed.
    """
    data_dirs = {QUARANTINE: quarantined, bronze_table: rows}
    written = []
    for table, data in data_dirs.items():
        if data.num_rows:
            written.append(write_atomically(data, partition_dir(warehouse, table, topic, partition), offsets))
    mine = Commit(offsets.first, offsets.last, rows.num_rows, quarantined.num_rows)
    winner = _commit_exclusively(commit_dir(warehouse, bronze_table, topic, partition), mine)
    if winner.last != mine.last:
        for path in written:
            path.unlink(missing_ok=True)
    return winner


def _commit_exclusively(directory: Path, commit: Commit) -> Commit:
    """Create ``directory/<first>.json`` unless it exists; return the commit that is there."""
    _make_durable_dirs(directory)
    final = directory / commit_name(commit.first)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    with open(tmp, "w") as sink:
        sink.write(commit.to_json())
        sink.flush()
        os.fsync(sink.fileno())
    try:
        # link(2) fails when the name exists: the file system decides who commits, not the
        # loaders' (possibly stale) idea of who owns the partition.
        os.link(tmp, final)
    except FileExistsError:
        return read_commit(final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return commit


def recover_partition(warehouse: Path, bronze_table: str, topic: str, partition: int) -> int | None:
    """Tidy one partition's files after a crash; return the next offset to read.

    Returns None when nothing of the partition has been committed yet (Kafka's committed
    offset, or the reset policy, decides). Removes temporary files, and data files that no
    commit can ever name: those inside the committed offsets that are not a committed range
    (a crash between writing and committing, or a stale loader that lost the race). Data files
    beyond the last commit stay: a loader may be about to commit them, and the next writer of
    that range replaces them.
    """
    log_dir = commit_dir(warehouse, bronze_table, topic, partition)
    data_dirs = [partition_dir(warehouse, t, topic, partition) for t in (bronze_table, QUARANTINE)]
    for directory in (*data_dirs, log_dir):
        if directory.is_dir():
            for entry in os.scandir(directory):
                if entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
    done = commits(warehouse, bronze_table, topic, partition)
    if not done:
        return None
    committed = {c.offsets for c in done}
    end = done[-1].last
    for directory in data_dirs:
        for stray in ranges_in(directory):
            if stray.first <= end and stray not in committed:
                (directory / stray.file_name).unlink(missing_ok=True)
    return end + 1
