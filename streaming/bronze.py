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

import io

import pyarrow as pa
import pyarrow.parquet as pq

from core import tables
from core.contract import EVENT_FIELDS, IDENTITY_FIELDS
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, QUARANTINE, OffsetRange, partition_key
from core.loader_log import Commit, commit_key, commit_prefix, commits
from core.storage import LocalStore, Store

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


def rows_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """``rows`` (dicts by column name; a missing key is null) as an Arrow table of ``schema``.

    Built a column at a time: ``pa.Table.from_pylist`` converts row by row and took 16 us a row,
    the loader's largest cost after validation; this takes about half that.
    """
    return pa.Table.from_arrays([pa.array([row.get(f.name) for row in rows], type=f.type) for f in schema], schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as one Parquet file (zstd), in memory: a batch is bounded, and a store writes
    whole objects."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def data_key(table: str, topic: str, partition: int, offsets: OffsetRange) -> str:
    return f"{partition_key(table, topic, partition)}/{offsets.file_name}"


def ranges_in(store: Store, table: str, topic: str, partition: int) -> list[OffsetRange]:
    """The offset ranges of the data files of one partition, committed or not, in order."""
    prefix = partition_key(table, topic, partition)
    found = (OffsetRange.from_file_name(k[len(prefix) + 1 :]) for k in store.list(prefix))
    return sorted((r for r in found if r is not None), key=lambda r: r.first)


def publish_range(
    store: Store,
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
    call meanwhile (local store; it owns the partition now): nothing was committed.
    """
    written = []
    for table, data in ((QUARANTINE, quarantined), (bronze_table, rows)):
        if data.num_rows:
            key = data_key(table, topic, partition, offsets)
            store.put(key, parquet_bytes(data))
            written.append(key)
    mine = Commit(offsets.first, offsets.last, rows.num_rows, quarantined.num_rows)
    key = commit_key(bronze_table, topic, partition, offsets.first)
    # The store, not the loaders' (possibly stale) idea of who owns the partition, decides who
    # commits: a second create of the same key is refused.
    if store.put_if_absent(key, mine.to_json()):
        _remove_other_ranges_from(store, (QUARANTINE, bronze_table), topic, partition, offsets)
        return mine
    winner = Commit.from_json(store.get(key))
    if winner.last != mine.last:
        for written_key in written:
            store.delete(written_key)
    return winner


def _remove_other_ranges_from(store: Store, tables: tuple[str, ...], topic: str, partition: int, offsets: OffsetRange) -> None:
    """Remove data files that start where the committed ``offsets`` start but end elsewhere:
    a killed or stale writer's range that recovery had to leave (it lay beyond the last commit
    then) and that this commit has now made impossible to commit."""
    for table in tables:
        for stray in ranges_in(store, table, topic, partition):
            if stray.first == offsets.first and stray.last != offsets.last:
                store.delete(data_key(table, topic, partition, stray))


def recover_partition(store: Store, bronze_table: str, topic: str, partition: int) -> int | None:
    """Tidy one partition's files after a crash; return the next offset to read.

    Returns None when nothing of the partition has been committed yet (Kafka's committed
    offset, or the reset policy, decides). Removes temporary files (a local store's), and data
    files that no commit can ever name: those inside the committed offsets that are not a
    committed range (a crash between writing and committing, or a stale loader that lost the
    race). Data files beyond the last commit stay: a loader may be about to commit them; the
    next commit at that offset replaces or removes them (:func:`publish_range`).
    """
    tables_written = (bronze_table, QUARANTINE)
    if isinstance(store, LocalStore):
        for table in tables_written:
            store.remove_temporaries(partition_key(table, topic, partition))
        store.remove_temporaries(commit_prefix(bronze_table, topic, partition))
    done = commits(store, bronze_table, topic, partition)
    if not done:
        return None
    committed = {c.offsets for c in done}
    end = done[-1].last
    for table in tables_written:
        for stray in ranges_in(store, table, topic, partition):
            if stray.first <= end and stray not in committed:
                store.delete(data_key(table, topic, partition, stray))
    return end + 1
