"""Publication: validated gold of one date becomes visible to analysts, all tables or none.

``build_gold`` writes each table of date D once, under ``gold/<table>/as_of_date=D/build=B``
(B new for every build), and :func:`stage` records that build in ``staging/gold/D.json``. The
gold gate reads the staged files; :func:`publish` then writes the publication manifest
``published/D.json``, which names every file of the eight tables. Readers (``engagement
query``, the PostgreSQL mirror, the report) read the files a manifest names and nothing else.

Writing one object is atomic on a local folder (rename) and on object storage (PUT), so a
reader sees the previous manifest or the new one, never a mix of tables, and nothing is moved
or copied. A re-run of D writes a new build and replaces D's manifest; files no manifest names
any more are removed by :func:`prune`.
"""

from __future__ import annotations

import json
import secrets
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.layout import SILVER_TABLES, gold_build_key, publication_key, published_dates, staging_key
from core.settings import Settings
from core.storage import Store, as_store, warehouse_store
from core.tables import GOLD_TABLES


class PublishError(UserError):
    """Gold of a date cannot be published yet: the message names the step to run first."""


def new_build() -> str:
    """A build id: sortable by time, unique across concurrent writers."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def data_files(store: Store, prefix: str) -> list[str]:
    """The Parquet files a writer (Spark, pyarrow) left under ``prefix``, without its markers."""
    return [k for k in store.list(prefix) if k.endswith(".parquet") and not k.rsplit("/", 1)[1].startswith(("_", "."))]


def stage(store: Store, as_of_date: date, build: str, **about: Any) -> dict[str, Any]:
    """Record build ``build`` of every gold table of ``as_of_date`` as the one to validate and
    publish; ``about`` (how it was built: silver version, time zone, mode) goes into the record."""
    from jobs.storage import parquet_rows

    files = {name: data_files(store, gold_build_key(name, as_of_date, build)) for name in GOLD_TABLES}
    missing = [name for name, found in files.items() if not found]
    if missing:
        raise PublishError(f"build {build} of {as_of_date} has no files for {', '.join(missing)}: run build_gold again")
    record = {
        "as_of_date": as_of_date.isoformat(),
        "build": build,
        "tables": files,
        "row_counts": {name: parquet_rows(store, keys) for name, keys in files.items()},
        **about,
    }
    store.put(staging_key(as_of_date), json.dumps(record, indent=2).encode())
    return record


def staged(store: Store, as_of_date: date) -> dict[str, Any]:
    """The staged build of ``as_of_date``; PublishError when build_gold has not run."""
    try:
        return json.loads(store.get(staging_key(as_of_date)))
    except FileNotFoundError:
        raise PublishError(
            f"no gold is built for {as_of_date}: run build_gold first (engagement run --as-of {as_of_date})"
        ) from None


def publication(warehouse: Path | Store, as_of_date: date) -> dict[str, Any] | None:
    """The publication manifest of ``as_of_date``, or None when it is not published."""
    try:
        return json.loads(as_store(warehouse).get(publication_key(as_of_date)))
    except FileNotFoundError:
        return None


def published_files(warehouse: Path | Store, table: str, as_of_date: date) -> list[str]:
    """The keys of the files of one published gold table."""
    record = publication(warehouse, as_of_date)
    if record is None:
        raise PublishError(f"gold for {as_of_date} is not published: run `engagement run --as-of {as_of_date}` first")
    files = record["tables"][table]
    if isinstance(files, str):  # a folder: written before publication by manifest
        raise PublishError(
            f"{as_of_date} was published by an older version of the pipeline: run `engagement run --as-of {as_of_date}` again"
        )
    return files


def read_published(warehouse: Path | Store, table: str, as_of_date: date):
    """One published gold table as an Arrow table (every file its manifest names)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    store = as_store(warehouse)
    # use_threads=False: with Arrow's thread pool, a process that read from these in-memory
    # buffers aborted at exit about one time in eight ("terminate called without an active
    # exception"): the pool still held them when Python shut down. The files are small.
    return pa.concat_tables(
        pq.read_table(io.BytesIO(store.get(k)), use_threads=False) for k in published_files(store, table, as_of_date)
    )


def publish(settings: Settings, as_of_date: date) -> dict[str, Any]:
    """Publish the staged (and validated) gold of ``as_of_date``: one manifest, written last.

    Returns the manifest. Re-running it publishes the same build again (idempotent). With
    ``ENGAGEMENT_POSTGRES_URL`` set, the same tables are then mirrored to PostgreSQL.
    """
    store = warehouse_store(settings)
    record = {**staged(store, as_of_date), "published_at": datetime.now(timezone.utc).isoformat()}
    store.put(publication_key(as_of_date), json.dumps(record, indent=2).encode())
    if settings.postgres_url:
        # After the manifest: a PostgreSQL failure fails the step, and a retry republishes (idempotent).
        from engagement.postgres import publish_to_postgres

        publish_to_postgres(
            settings.postgres_url,
            store,
            as_of_date,
            analyst_role=settings.postgres_analyst_role,
            analyst_password=settings.postgres_analyst_password,
        )
    return record


def prune(store: Store, *, keep_days: int, now: datetime | None = None) -> dict[str, int]:
    """Remove publications (and staged builds) of dates more than ``keep_days`` old, the newest
    publication excepted, the gold builds that nothing kept names any more, and the silver files
    the newest silver version does not name. Returns how many publications, gold builds and
    silver builds went.

    A build younger than a day is never removed: it may belong to a run still writing it.
    """
    now = now or datetime.now(timezone.utc)
    dates = published_dates(store)
    dropped = [d for d in dates[:-1] if (now.date() - d).days > keep_days]
    for d in dropped:
        store.delete(publication_key(d))
    for key in store.list("staging/gold"):  # builds of old dates that wait for nothing any more
        day = date.fromisoformat(key.rsplit("/", 1)[1].removesuffix(".json"))
        if (now.date() - day).days > keep_days and day not in dates[-1:]:
            store.delete(key)
    named: set[str] = set()
    for key in store.list("published") + store.list("staging/gold"):
        if key.endswith(".json"):
            record = json.loads(store.get(key))
            named.update(_build_of(k) for keys in record["tables"].values() for k in keys)
    removed = set()
    for key in store.list("gold"):
        build = _build_of(key)
        if build not in named and now - _built_at(build) > timedelta(days=1):
            store.delete(key)
            removed.add(build)
    # Silver files that the newest silver version does not name were replaced by a later run
    # (a rewritten date); a day's grace for a run that is writing its version right now.
    from core import silver_log

    head = silver_log.head(store)
    live = set(head.event_files(unparsed=True) + head.identity_map) if head else set()
    if head:
        live.update(f for part in head.events.values() for f in part.get("summary", []))
    silver_builds = set()
    for key in [k for table in SILVER_TABLES for k in store.list(table)]:
        build = key.split("/")[2] if key.count("/") >= 3 else ""
        if key not in live and now - _built_at(f"x/build={build}") > timedelta(days=1):
            store.delete(key)
            silver_builds.add(build)
    return {"publications": len(dropped), "builds": len(removed), "silver": len(silver_builds)}


def _build_of(key: str) -> str:
    """``gold/<table>/as_of_date=D/build=B`` of a file key."""
    head, _, rest = key.partition("/build=")
    return f"{head}/build={rest.split('/', 1)[0]}"


def _built_at(build: str) -> datetime:
    stamp = build.rsplit("/build=", 1)[1].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)  # not ours: old enough
