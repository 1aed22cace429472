"""Bronze storage and its commit log, on a local folder and on a real S3-compatible server.

The same tests run against both stores: the loader's guarantees (a range is committed once,
readers see committed ranges only, recovery resumes after the last commit) must not depend on
where the warehouse is.
"""

from __future__ import annotations

import io
import json
import threading
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_loader_units import LIKE, NOW

from core import layout, loader_log
from core.contract import KUAISHOU_TOPIC
from core.storage import LocalStore, Store, open_store
from streaming import bronze
from streaming.loader import route

PARTITION = f"bronze/events/topic={KUAISHOU_TOPIC}/partition=0"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "warehouse")
    server = request.getfixturevalue("object_store")
    return open_store(f"s3://engagement/{uuid.uuid4().hex}", endpoint=server.endpoint)


def _events(*offsets: int) -> pa.Table:
    rows = [route(KUAISHOU_TOPIC, 0, o, None, json.dumps({**LIKE, "event_id": f"e-{o}"}).encode(), None, NOW).row for o in offsets]
    return pa.Table.from_pylist(rows, schema=bronze.BRONZE_EVENTS_SCHEMA)


def _quarantine(*offsets: int) -> pa.Table:
    rows = [route(KUAISHOU_TOPIC, 0, o, None, b"not json", None, NOW).row for o in offsets]
    return pa.Table.from_pylist(rows, schema=bronze.QUARANTINE_SCHEMA)


def _publish(store: Store, first: int, last: int, *, bad: tuple[int, ...] = ()) -> loader_log.Commit:
    good = [o for o in range(first, last + 1) if o not in bad]
    return bronze.publish_range(
        store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0, layout.OffsetRange(first, last), _events(*good), _quarantine(*bad)
    )


def _name(first: int, last: int) -> str:
    return f"{first:020d}-{last:020d}.parquet"


def _offsets(store: Store, table: str) -> list[int]:
    keys = loader_log.committed_files(store, table)
    return sorted(o for k in keys for o in pq.read_table(io.BytesIO(store.get(k)), columns=["kafka_offset"]).column(0).to_pylist())


def test_a_store_writes_whole_objects_and_creates_exclusively(store):
    store.put("a/b/c.bin", b"one")
    store.put("a/b/c.bin", b"two")
    assert store.get("a/b/c.bin") == b"two"
    assert store.put_if_absent("a/d.json", b"first") is True
    assert store.put_if_absent("a/d.json", b"second") is False
    assert store.get("a/d.json") == b"first"
    assert store.list("a") == ["a/b/c.bin", "a/d.json"]
    assert store.list("nothing") == []
    store.delete("a/b/c.bin")
    store.delete("a/b/c.bin")  # already gone: fine
    assert store.list("a") == ["a/d.json"]
    with pytest.raises(FileNotFoundError):
        store.get("a/b/c.bin")
    if isinstance(store, LocalStore):
        assert not list(store.root.rglob("*.tmp"))  # no temporary left behind


def test_of_many_racing_creates_of_one_key_exactly_one_wins(store):
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        results.append(store.put_if_absent("race/commit.json", f"writer {i}".encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.get("race/commit.json").startswith(b"writer ")


def test_recovery_resumes_after_last_commit_and_drops_files_no_commit_can_name(store):
    assert bronze.recover_partition(store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) is None
    assert _publish(store, 0, 9, bad=(3,)) == loader_log.Commit(0, 9, 9, 1)
    assert _publish(store, 10, 24) == loader_log.Commit(10, 24, 15, 0)
    # Left by a crash or a stale loader: files of 10-20 (another range at a committed first
    # offset: no commit can ever name them) and of 25-30 (written, not yet committed: a loader
    # may be about to commit them).
    for table, data in ((layout.BRONZE_EVENTS, _events(10)), (layout.QUARANTINE, _quarantine(10))):
        for first, last in ((10, 20), (25, 30)):
            store.put(bronze.data_key(table, KUAISHOU_TOPIC, 0, layout.OffsetRange(first, last)), bronze.parquet_bytes(data))

    assert bronze.recover_partition(store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 25
    data = [k for k in store.list(PARTITION) if k.endswith(".parquet")]
    assert data == [f"{PARTITION}/{_name(0, 9)}", f"{PARTITION}/{_name(10, 24)}", f"{PARTITION}/{_name(25, 30)}"]
    quarantine = f"quarantine/topic={KUAISHOU_TOPIC}/partition=0"
    assert store.list(quarantine) == [f"{quarantine}/{_name(0, 9)}", f"{quarantine}/{_name(25, 30)}"]
    # Readers see the committed ranges only.
    assert loader_log.committed_files(store, layout.BRONZE_EVENTS) == data[:2]
    assert _offsets(store, layout.BRONZE_EVENTS) == [o for o in range(25) if o != 3]
    assert _offsets(store, layout.QUARANTINE) == [3]

    # The next loader resumes at 25 with another batch size: its commit of 25-27 removes the
    # files of 25-30, which nothing can commit any more.
    assert _publish(store, 25, 27) == loader_log.Commit(25, 27, 3, 0)
    assert [k for k in store.list(PARTITION) if k.endswith(".parquet")] == data[:2] + [f"{PARTITION}/{_name(25, 27)}"]
    assert store.list(quarantine) == [f"{quarantine}/{_name(0, 9)}"]


def test_of_two_loaders_writing_one_range_exactly_one_commits_it(store):
    """A loader frozen inside its publish step, evicted, and thawed after another loader took its
    partition: both write offsets 5.., and the commit log decides."""
    _publish(store, 0, 4)
    # The new owner commits 5-9 first; the stale loader (it had read up to 12) loses and its
    # file goes; the new owner then commits 10-12 on top.
    assert _publish(store, 5, 9) == loader_log.Commit(5, 9, 5, 0)
    assert _publish(store, 5, 12, bad=(11,)) == loader_log.Commit(5, 9, 5, 0)
    assert _publish(store, 10, 12, bad=(11,)) == loader_log.Commit(10, 12, 2, 1)
    # The same range written twice is the same records: whoever commits, one copy is seen.
    assert _publish(store, 13, 14) == _publish(store, 13, 14) == loader_log.Commit(13, 14, 2, 0)
    assert _offsets(store, layout.BRONZE_EVENTS) == [o for o in range(15) if o != 11]
    assert _offsets(store, layout.QUARANTINE) == [11]
    data = [k.rsplit("/", 1)[1] for k in store.list(PARTITION) if k.endswith(".parquet")]
    assert data == [_name(0, 4), _name(5, 9), _name(10, 12), _name(13, 14)]
    assert bronze.recover_partition(store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 15


def test_a_stale_loader_that_commits_first_wins_and_the_owner_resumes_after_it(store):
    _publish(store, 0, 4)
    assert _publish(store, 5, 12) == loader_log.Commit(5, 12, 8, 0)  # the stale loader, first
    assert _publish(store, 5, 9) == loader_log.Commit(5, 12, 8, 0)  # the owner loses ...
    assert bronze.recover_partition(store, layout.BRONZE_EVENTS, KUAISHOU_TOPIC, 0) == 13  # ... and resumes
    assert [k.rsplit("/", 1)[1] for k in loader_log.committed_files(store, layout.BRONZE_EVENTS)] == [_name(0, 4), _name(5, 12)]
    assert _offsets(store, layout.BRONZE_EVENTS) == list(range(13))
