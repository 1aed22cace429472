"""The daily run's storage side: which bronze is new, silver's next version, gold's base.

A run for date D goes through three records:

1. ``validate_bronze`` fixes the bronze it covers: every range committed when it starts, up to
   ``staging/silver/D.json``'s ``upto`` offsets, of which it validates those past silver's
   watermarks (or all of them for ``--full-refresh``).
2. ``build_silver`` reads those ranges, adds their first copies to silver (``jobs.silver``) as
   new files of the ``event_date`` folders they touch (rewriting a date only when one of them
   replaces a copy it holds) and commits the next silver version (``core.silver_log``); the
   version number goes into the staging record.
3. ``build_gold`` starts from the newest publication as of a date <= D built on an earlier
   version of the same silver, and recomputes what the versions since changed
   (``jobs.gold_incremental``); without one it computes every table whole.

Bronze files, silver files and gold builds are written once and never moved; prune removes
what nothing names any more.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

from core import silver_log
from core.errors import UserError
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY, SILVER_EVENTS, SILVER_IDENTITY_MAP, SILVER_SUMMARY, partition_key
from core.loader_log import commits, partitions
from core.settings import Settings
from core.silver_log import UNPARSED, Changes, SilverVersion
from core.storage import Store

log = logging.getLogger("engagement.incremental")

BRONZE_TABLES = (BRONZE_EVENTS, BRONZE_IDENTITY)


class NotValidated(UserError):
    """build_silver ran before validate_bronze for its date."""


def plan_key(as_of_date: date) -> str:
    return f"staging/silver/{as_of_date.isoformat()}.json"


# --------------------------------------------------------------------------------------------
# Bronze: what is committed, and what is new to silver
# --------------------------------------------------------------------------------------------
def committed_offsets(store: Store) -> dict[str, dict[str, int]]:
    """Per bronze table and ``topic/partition``, the first offset not yet committed."""
    out: dict[str, dict[str, int]] = {}
    for table in BRONZE_TABLES:
        out[table] = {}
        for topic, partition in partitions(store, table):
            found = commits(store, table, topic, partition)
            if found:
                out[table][f"{topic}/{partition}"] = found[-1].last + 1
    return out


def bronze_files(store: Store, table: str, after: dict[str, int], upto: dict[str, int]) -> list[str]:
    """The data files of ``table``'s ranges committed from ``after`` (per partition, 0 when
    absent) up to ``upto``."""
    files = []
    for tp, end in sorted(upto.items()):
        topic, partition = tp.rsplit("/", 1)
        start = after.get(tp, 0)
        for commit in commits(store, table, topic, int(partition)):
            if commit.first >= start and commit.last < end and commit.bronze_rows:
                files.append(f"{partition_key(table, topic, int(partition))}/{commit.offsets.file_name}")
    return files


def plan_bronze(store: Store, as_of_date: date, *, full_refresh: bool) -> dict[str, Any]:
    """Fix the bronze a run covers (what is committed now) and record it for build_silver."""
    head = silver_log.head(store)
    plan = {
        "as_of_date": as_of_date.isoformat(),
        "full_refresh": full_refresh,  # as asked: without silver, every run starts from all of bronze
        "base_version": head.number if head else None,
        "upto": committed_offsets(store),
    }
    store.put(plan_key(as_of_date), json.dumps(plan, indent=1).encode())
    return plan


def read_plan(store: Store, as_of_date: date) -> dict[str, Any]:
    try:
        return json.loads(store.get(plan_key(as_of_date)))
    except FileNotFoundError:
        raise NotValidated(
            f"the bronze of the run for {as_of_date} has not been validated: run validate_bronze first "
            f"(engagement run --as-of {as_of_date})"
        ) from None


def new_bronze(store: Store, plan: dict[str, Any], head: SilverVersion | None) -> dict[str, list[str]]:
    """Per bronze table, the files of the plan's ranges that silver (``head``) does not have."""
    after = {} if plan["full_refresh"] or head is None else head.offsets
    return {t: bronze_files(store, t, after.get(t, {}), plan["upto"].get(t, {})) for t in BRONZE_TABLES}


# --------------------------------------------------------------------------------------------
# Silver
# --------------------------------------------------------------------------------------------
# Runs of different dates may build silver at the same time (an Airflow backfill runs several
# dates at once): the one that loses the commit starts again from the winner's version, which
# usually holds its bronze already.
COMMIT_ATTEMPTS = 5
# A daily run's new event ids are sent to every task to find silver's copies of them without
# shuffling silver (at 10M events, a day's 206k ids: the deduplication took 5-6 s instead of
# 11-13, and build_silver 27 s instead of 32). A million ids make a 160 MiB broadcast, held in
# the driver beside the collected rows while it is built: within the default 2 GiB driver. A
# larger backlog is joined by a shuffle. A full refresh sends the ids bronze holds more than
# one copy of, with their first copies' coordinates, up to as many (1 % of 10M events: 93k).
BROADCAST_IDS_AT_MOST = 1_000_000
# A day's new identity links merge the persons they reach on the driver (jobs.identity.relink):
# at 10M events, day 90's 452 links took build_silver's identity step (with the map's write)
# 5.3-7.7 s against 8.8-9.6 s for resolving the whole graph of 39k links again. 100k links name
# at most 300k accounts, which with their persons' other accounts are a few hundred MB of Python
# strings; a larger backlog is resolved on the executors.
RELINK_ON_DRIVER_AT_MOST = 100_000


def update_silver(spark, store: Store, settings: Settings, as_of_date: date) -> SilverVersion:
    """Add the planned bronze to silver and commit the next version (see the module doc)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return _update_silver(spark, store, settings, as_of_date)
        except silver_log.SilverConflict as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise silver_log.SilverConflict(f"{exc} ({attempt} times): run {as_of_date} again") from exc
            log.warning("%s; building on it instead (attempt %d of %d)", exc, attempt + 1, COMMIT_ATTEMPTS)
    raise AssertionError("unreachable")


def _update_silver(spark, store: Store, settings: Settings, as_of_date: date) -> SilverVersion:
    from pyspark.sql import functions as F

    from engagement.publish import data_files, new_build
    from jobs.gold_incremental import history_summary
    from jobs.identity import add_accounts, build_identity_map, copies_agree, link_copies, relink
    from jobs.privacy import fingerprint
    from jobs.silver import (
        ID_HASH,
        ID_HASH_PROBES,
        ID_INDEX_SCHEMA,
        STORED_COLUMNS,
        STORED_SCHEMA,
        accounts,
        dates_to_compare,
        earlier_copies,
        first_copies,
        links,
        with_id_hash,
    )
    from jobs.storage import read_bronze_files, read_with_schema, write_table

    plan = read_plan(store, as_of_date)
    head = silver_log.head(store)
    full = bool(plan["full_refresh"]) or head is None
    if head is not None and not full and head.timezone != settings.timezone:
        raise UserError(
            f"silver is dated in {head.timezone}, the reporting zone is now {settings.timezone}: "
            f"run `engagement run --as-of {as_of_date} --full-refresh`"
        )
    pseudonym_key = settings.pseudonymisation_key
    if head is not None and not full and head.key_fingerprint != fingerprint(pseudonym_key):
        raise UserError(
            "ENGAGEMENT_PSEUDONYMISATION_KEY "
            + ("changed" if pseudonym_key and head.key_fingerprint else "was set" if pseudonym_key else "was removed")
            + f" since silver version {head.number} was built, and pseudonyms of two keys do not mix: "
            f"run `engagement run --as-of {as_of_date} --full-refresh`"
        )
    files = new_bronze(store, plan, head)
    bronze = read_bronze_files(spark, store, BRONZE_EVENTS, files[BRONZE_EVENTS])

    def key(column):
        return F.coalesce(F.col(column).cast("string"), F.lit(UNPARSED))

    build = new_build()
    prefix = f"{SILVER_EVENTS}/{build}"
    # The id hashes held are of use only if this Spark computes the same (jobs.silver.ID_HASH).
    # The probes are a table of constants: the driver hashes them, no Spark job runs.
    probes = spark.sql("SELECT * FROM VALUES " + ", ".join(f"('{p}')" for p in ID_HASH_PROBES) + " AS probes(event_id)")
    hash_check = tuple(row[ID_HASH] for row in with_id_hash(probes).collect())
    hashes_hold = full or head.id_hash_check == hash_check

    def write_events(rows) -> dict[str, list[str]]:
        """``rows`` written as this build's event files, one folder per date, each row with the
        hash of its id (``jobs.silver.dates_to_compare`` reads it); the files written, by date."""
        write_table(with_id_hash(rows).withColumn("_date", key("event_date")), store, prefix, partition_by="_date")
        return _files_by_date(data_files(store, prefix))

    if full:
        # Every date is written whole, as one file, and the dates are those of the files
        # written: whole rows are read once, from bronze, on their way to their date's task
        # (the repeated ids and their first coordinates are found before, from a few columns).
        candidates = first_copies(
            bronze, timezone=settings.timezone, key=pseudonym_key, firsts=_first_of_repeated_ids(bronze)
        )
        written = write_events(candidates)
        touched = set(written)
        events: dict[str, Any] = {}
        replaced: set[str] = set()
        crowded: set[str] = set()
        rewritten: set[str] = set()
    else:
        # Read several times below when its ids are broadcast: computed once.
        candidates = first_copies(bronze, timezone=settings.timezone, key=pseudonym_key).localCheckpoint()
        few = candidates.count() <= BROADCAST_IDS_AT_MOST
        held_files = head.event_files(unparsed=True)
        if not hashes_hold:
            log.warning(
                "silver version %d's event id hashes were not all computed as this Spark computes them"
                " (written by another Spark release, or before they were checked): new ids are compared"
                " with every date's. `engagement run --as-of %s --full-refresh` writes them again.",
                head.number,
                as_of_date,
            )
        elif few:
            # Only the dates whose id hashes match a new id's (or that have none) are compared.
            index = read_with_schema(spark, store, held_files, ID_INDEX_SCHEMA)
            compared = [r["event_date"] for r in dates_to_compare(index, candidates).collect()]
            held_files = head.event_files([d for d in compared if d is not None], unparsed=None in compared)
        held = read_with_schema(spark, store, held_files, STORED_SCHEMA)
        added = earlier_copies(
            candidates,
            held.select("event_id", "kafka_topic", "kafka_partition", "kafka_offset", "event_date"),
            broadcast_ids=few,
        ).localCheckpoint()
        touched_rows = (
            added.select(key("event_date").alias("k"), F.lit(False).alias("r"))
            .unionByName(added.where("replaces").select(key("replaced_date").alias("k"), F.lit(True).alias("r")))
            .distinct()
            .collect()
        )
        touched = {r["k"] for r in touched_rows}
        events = dict(head.events)
        # A date whose held copy of an event goes is rewritten without it; the new events of any
        # other date are added to it as a file of their own (one per run), its earlier files kept
        # as they are, unless that would make more files than the setting allows: then it is
        # rewritten as one.
        replaced = {r["k"] for r in touched_rows if r["r"]}
        crowded = {k for k in touched if k in events and len(events[k]["files"]) >= settings.silver_max_files_per_date}
        rewritten = replaced | crowded
        if touched:
            fresh = added.select(*STORED_COLUMNS)
            old = [f for k in rewritten if k in events for f in events[k]["files"]]
            rows = fresh
            if old:
                rows = read_with_schema(spark, store, old, STORED_SCHEMA).join(fresh.select("event_id"), "event_id", "left_anti")
                rows = rows.unionByName(fresh)
            written = write_events(rows)
    if touched:
        # The history summary of the files just written (jobs.gold_incremental.history_summary:
        # a date's summary may span several files).
        summary_prefix = f"{SILVER_SUMMARY}/{build}"
        dated = [f for k, files_of_date in written.items() if k != UNPARSED for f in files_of_date]
        if dated:
            new_rows = read_with_schema(spark, store, dated, STORED_SCHEMA)
            write_table(history_summary(new_rows).withColumn("_date", key("event_date")), store, summary_prefix, partition_by="_date")
        summaries = _files_by_date(data_files(store, summary_prefix)) if dated else {}
        for k in touched:
            if k not in written:
                events.pop(k, None)  # its only events moved to another date
                continue
            kept = events.get(k) if k not in rewritten else None
            part = {
                "files": (kept["files"] if kept else []) + written[k],
                "rows": (kept["rows"] if kept else 0) + _rows(store, written[k]),
            }
            # Without a summary of its earlier files (a version from before summaries were
            # kept), the date has none: gold then reads its events.
            if k in summaries and (kept is None or "summary" in kept):
                part["summary"] = (kept["summary"] if kept else []) + summaries[k]
            events[k] = part

    def links_of(keys: list[str]):
        return links(read_bronze_files(spark, store, BRONZE_IDENTITY, keys), pseudonym_key)

    def all_links():
        return links_of(bronze_files(store, BRONZE_IDENTITY, {}, plan["upto"].get(BRONZE_IDENTITY, {})))

    current = SilverVersion(
        number=(head.number + 1) if head else 1,
        timezone=settings.timezone,
        offsets=_furthest(plan["upto"], {} if full else head.offsets),
        events=events,
        identity_map=[],
    )
    stored = read_with_schema(spark, store, current.event_files(), STORED_SCHEMA)
    new_links = links_of(files[BRONZE_IDENTITY]) if not full and files[BRONZE_IDENTITY] else None
    if full or replaced:  # a replaced copy may have been an account's only event
        identity_map = build_identity_map(accounts(stored), all_links())
    else:
        previous = read_with_schema(spark, store, head.identity_map, _identity_schema())
        copies = None if new_links is None else link_copies(all_links(), new_links, at_most=RELINK_ON_DRIVER_AT_MOST)
        if new_links is None:
            identity_map = add_accounts(previous, accounts(added))
        elif copies is not None and copies_agree(copies):
            # Persons only merge: the persons the new links reach are joined on the driver.
            log.info("identity: %d new links, the persons they reach resolved again", len(copies))
            identity_map = add_accounts(relink(previous, copies), accounts(added))
        else:
            log.info(
                "identity: the whole graph resolved again (%s)",
                "more new links than the driver takes" if copies is None else "a link's copies name different accounts",
            )
            identity_map = build_identity_map(previous.select("platform", "user_id").unionByName(accounts(added)), all_links())
    identity_prefix = f"{SILVER_IDENTITY_MAP}/{build}"
    write_table(identity_map.coalesce(1), store, identity_prefix)
    identity_files = data_files(store, identity_prefix)

    identity_dates: set[date] = set()
    if new_links is not None:
        # The history summary has a row for each date an account had an event: the same dates
        # from a fraction of the rows (versions from before summaries were kept read the events).
        summary = current.summary_files(current.event_dates)
        identity_dates = _dates_of_relinked_accounts(
            stored if summary is None else read_with_schema(spark, store, summary, STORED_SCHEMA),
            read_with_schema(spark, store, identity_files, _identity_schema()),
            new_links,
        )
    changes = Changes(
        dates=frozenset(date.fromisoformat(k) for k in touched if k != UNPARSED),
        identity_dates=frozenset(identity_dates),
        everything=full,
    )
    version = silver_log.commit(
        store,
        SilverVersion(
            current.number, current.timezone, current.offsets, events, identity_files, changes,
            key_fingerprint=fingerprint(pseudonym_key), id_hash_check=hash_check if hashes_hold else None,
        ),  # fmt: skip
    )
    plan["version"] = version.number
    store.put(plan_key(as_of_date), json.dumps(plan, indent=1).encode())
    if not full:
        added.unpersist()
        candidates.unpersist()
    log.info(
        "silver version %d: %d new bronze files, %d dates added to, %d of them rewritten (%d to merge their files)%s",
        version.number,
        len(files[BRONZE_EVENTS]),
        len(touched),
        len(rewritten),
        len(crowded - replaced),
        " (full refresh)" if full else "",
    )
    return version


def _first_of_repeated_ids(bronze):
    """A full refresh's ids with more than one copy, with their first copies' coordinates
    (``jobs.silver.first_of_repeated``), for ``first_copies`` to keep each id's first copy where
    it reads it; None, for it to sort every row by id instead, when they are too many to send
    to every task or bronze holds a message twice."""
    from jobs.silver import first_of_repeated, repeated_ids

    ids = repeated_ids(bronze).localCheckpoint()
    count = ids.count()
    if count > BROADCAST_IDS_AT_MOST:
        log.info("silver: %d event ids have more than one copy: every copy sorted by id", count)
        return None
    firsts = first_of_repeated(bronze, ids).localCheckpoint()
    if not firsts.where("doubled").isEmpty():
        log.warning("bronze holds a message (topic, partition, offset) twice: every copy sorted by id")
        return None
    log.info("silver: %d event ids have more than one copy: their first copies found first", count)
    return firsts


def _furthest(*watermarks: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per table and partition, the furthest of several watermarks (a run that planned before
    another committed must not move silver's watermarks back)."""
    out: dict[str, dict[str, int]] = {}
    for marks in watermarks:
        for table, parts in marks.items():
            for tp, offset in parts.items():
                out.setdefault(table, {})[tp] = max(offset, out.get(table, {}).get(tp, 0))
    return out


def _identity_schema():
    from jobs.schemas import IDENTITY_MAP

    return IDENTITY_MAP


def _files_by_date(keys: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in keys:
        folder = next((p for p in k.split("/") if p.startswith("_date=")), None)
        if folder is not None:
            out.setdefault(folder.removeprefix("_date="), []).append(k)
    return out


def _rows(store: Store, keys: list[str]) -> int:
    from jobs.storage import parquet_rows

    return parquet_rows(store, keys)


def _dates_of_relinked_accounts(activity, identity_map, new_links) -> set[date]:
    """Event dates of the accounts in the persons that ``new_links`` touch; ``activity`` is
    silver's events or their history summary."""
    from pyspark.sql import functions as F

    nodes = (
        new_links.select(F.lit("kuaishou").alias("platform"), F.col("kuaishou_user_id").alias("user_id"))
        .unionByName(new_links.select(F.lit("wechat").alias("platform"), F.col("wechat_openid").alias("user_id")))
        .unionByName(new_links.select(F.lit("wechat_unionid").alias("platform"), F.col("wechat_unionid").alias("user_id")))
        .where(F.col("user_id").isNotNull())
    )
    persons = identity_map.join(nodes, ["platform", "user_id"], "left_semi").select("person_id").distinct()
    relinked = identity_map.join(F.broadcast(persons), "person_id", "left_semi").select("platform", "user_id")
    dated = activity.where(F.col("event_date").isNotNull()).join(F.broadcast(relinked), ["platform", "user_id"], "left_semi")
    return {r["event_date"] for r in dated.select("event_date").distinct().collect()}


def silver_version_of_run(store: Store, as_of_date: date) -> SilverVersion:
    """The silver version the run for ``as_of_date`` built (its plan names it)."""
    plan = read_plan(store, as_of_date)
    if plan.get("version") is None:
        raise NotValidated(f"silver has not been built for the run of {as_of_date}: run build_silver first")
    return silver_log.read_version(store, int(plan["version"]))


# --------------------------------------------------------------------------------------------
# Gold
# --------------------------------------------------------------------------------------------
def gold_base(store: Store, version: SilverVersion, as_of_date: date) -> tuple[dict[str, Any], Changes] | None:
    """The newest publication to start gold of ``as_of_date`` from, and what silver changed
    since it was built; None when gold has to be computed whole."""
    from core.layout import published_dates
    from engagement.publish import publication

    if version.changes.everything:
        return None
    for day in reversed(published_dates(store)):
        if day > as_of_date:
            continue
        record = publication(store, day)
        built_on = record.get("silver_version") if record else None
        if built_on is None or built_on > version.number or record.get("timezone") != version.timezone:
            continue
        changes = silver_log.changes_since(store, built_on, version.number)
        return None if changes.everything else (record, changes)
    return None


def build_gold_tables(spark, store: Store, version: SilverVersion, as_of_date: date) -> tuple[dict, dict[str, Any]]:
    """Gold DataFrames of ``as_of_date`` and how they were made (for the run record)."""
    from core.tables import GOLD
    from jobs.gold_incremental import cached_summary, event_dates_read, update_gold_tables
    from jobs.schemas import spark_schema
    from jobs.silver import STORED_SCHEMA
    from jobs.storage import read_with_schema

    dates = [d for d in version.event_dates if d <= as_of_date]
    identity_map = read_with_schema(spark, store, version.identity_map, _identity_schema()).cache()
    found = gold_base(store, version, as_of_date)
    if found is None:
        # Every table reads every event: read them once.
        events = read_with_schema(spark, store, version.event_files(dates), STORED_SCHEMA).cache()
        return update_gold_tables(events, identity_map, as_of_date=as_of_date), {"mode": "full", "silver_version": version.number}
    record, changes = found
    base_as_of = date.fromisoformat(record["as_of_date"])
    # The tables built incrementally read the events of the recent (and changed) dates only;
    # those computed whole read the history summary (a third to a half of the rows, a few columns),
    # which versions written before it existed lack: then it is derived from all the events.
    summary_files = version.summary_files(dates)
    if summary_files is None:
        history, read = None, dates
    else:
        history = cached_summary(read_with_schema(spark, store, summary_files, STORED_SCHEMA))
        needed = event_dates_read(changes, base_as_of, as_of_date)
        read = [d for d in dates if d in needed]
    events = read_with_schema(spark, store, version.event_files(read), STORED_SCHEMA)
    base = {name: read_with_schema(spark, store, keys, spark_schema(GOLD[name])) for name, keys in record["tables"].items()}
    tables = update_gold_tables(
        events,
        identity_map,
        as_of_date=as_of_date,
        base=base,
        base_as_of=base_as_of,
        changes=changes,
        history=history,
    )
    how = {
        "mode": "incremental",
        "silver_version": version.number,
        "base": record["as_of_date"],
        "base_silver_version": record["silver_version"],
        "changed_dates": len(changes.dates),
    }
    return tables, how


def silver_events(spark, store: Store):
    """The newest silver ``events`` (every date, with ``person_id``), for people and tests."""
    from jobs.schemas import IDENTITY_MAP
    from jobs.silver import STORED_SCHEMA, with_person
    from jobs.storage import MissingInput, read_with_schema

    version = silver_log.head(store)
    if version is None:
        raise MissingInput(f"{store.url(silver_log.VERSIONS)} holds no silver yet: run `engagement run --as-of D` first")
    identity_map = read_with_schema(spark, store, version.identity_map, IDENTITY_MAP)
    return with_person(read_with_schema(spark, store, version.event_files(), STORED_SCHEMA), identity_map)
