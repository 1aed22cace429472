"""Silver: typed, deduplicated events with reporting-zone dates and person ids.

* ``event_time`` (RFC 3339, either offset style) becomes a UTC instant; ``event_date`` is its
  calendar date in the reporting time zone.
* A repeated ``event_id`` is a redelivery and counts once: the copy with the smallest
  (topic, partition, offset) is kept, so the choice does not depend on the order in which copies
  arrive or on how they were split between runs. Silver keeps the kept copy's coordinates so a
  later run can tell whether a copy it reads is earlier than the one silver holds.
* Silver holds every date bronze has; gold bounds what it uses by ``as_of_date``.
* Every identity link is used, whatever its ``linked_at``: DESIGN bounds events by
  ``as_of_date``, not links, and a person is the same person on every date. A link that arrives
  late therefore corrects earlier rows the way a late event does.
* Events are stored without ``person_id``: a late link changes the person of every event of the
  accounts it joins, on every date, and rewriting those dates would cost as much as a full
  refresh. :func:`with_person` joins it on from ``identity_map`` when silver is read.

Incremental update (:func:`first_copies` + :func:`earlier_copies`): the first copies of the new
bronze that silver holds no earlier copy of are added; the copy silver held, if any, goes. Which
dates' held ids to compare them with is found from a hash of every held id first
(:func:`dates_to_compare`). A full
refresh finds the few ids with more than one copy first (:func:`repeated_ids`,
:func:`first_of_repeated`) and hands their first copies' coordinates to :func:`first_copies`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, IntegerType, LongType, StringType, StructField, StructType

from core import tables
from jobs.identity import build_identity_map
from jobs.privacy import EVENT_ID_COLUMNS, LINK_ID_COLUMNS, pseudonymise
from jobs.schemas import SILVER_EVENTS, conform

COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset")
# The columns of silver's event files: the silver.events definition without person_id, plus
# the Kafka coordinates of the copy kept.
# All nullable: the event_date of an unparsed copy is NULL, and Parquet reads as nullable anyway.
STORED_SCHEMA = StructType(
    [StructField(f.name, f.dataType, True) for f in SILVER_EVENTS.fields if f.name != "person_id"]
    + [
        StructField("kafka_topic", StringType(), True),
        StructField("kafka_partition", IntegerType(), True),
        StructField("kafka_offset", LongType(), True),
    ]
)
STORED_COLUMNS = tuple(STORED_SCHEMA.fieldNames())

# Silver's event files also hold a 64-bit hash of each event_id, which no reader of events asks
# for (STORED_SCHEMA leaves it out). A daily run reads it and event_date alone to find the dates
# that may hold a copy of a new event (:func:`dates_to_compare`), and compares the ids of those
# dates only: at 10M events the ids of every date took 3.5-5.0 s to read and probe, the hashes
# 1.0-2.3 s, and a day's redeliveries were on the last 4 of 89 dates. A file without the column
# (written before it was kept, or by hand) reads as NULL, and its date is always compared.
# The hashes are only of use to a Spark whose xxhash64 gives the values they were written with:
# silver's log keeps the hashes of ID_HASH_PROBES by the Spark that wrote them (``id_hash_check``),
# and a run whose Spark gives others (another release, a cluster's own) compares every date.
ID_HASH = "event_id_hash"
# event_ids of the lengths that take each of xxhash64's paths (1-128 characters: stripes of 32
# bytes, then words of 8 and 4 bytes, then single bytes).
ID_HASH_PROBES = ("e", "ev-1", "event-01", "kuaishou-00000000-0000-4000-8000-000000000001", "w" * 128)
ID_INDEX_SCHEMA = StructType([StructField("event_date", DateType(), True), StructField(ID_HASH, LongType(), True)])


def local_date(timestamp_col: str, timezone: str):
    """The calendar date of a UTC instant in ``timezone``."""
    return F.to_date(F.from_utc_timestamp(F.col(timestamp_col), timezone))


def _coordinates() -> F.Column:
    return F.struct(*COORDINATES)


def repeated_ids(bronze_events: DataFrame) -> DataFrame:
    """The ``event_id``s ``bronze_events`` holds more than one copy of, from that column alone."""
    return bronze_events.groupBy("event_id").count().where(F.col("count") > 1).select("event_id")


def first_of_repeated(bronze_events: DataFrame, repeated: DataFrame) -> DataFrame:
    """Per id of ``repeated`` (:func:`repeated_ids`, few enough to send to every task): the
    coordinates of its first copy (``first``), and whether a message, the same coordinates, is
    held more than once (``doubled``: the loader writes each offset once, so this is never
    expected, but :func:`first_copies` cannot take those ids from the coordinates alone)."""
    copies = bronze_events.select("event_id", *COORDINATES).join(F.broadcast(repeated), on="event_id", how="left_semi")
    return copies.groupBy("event_id").agg(
        F.min(_coordinates()).alias("first"),
        (F.count(F.lit(1)) > F.count_distinct(*COORDINATES)).alias("doubled"),
    )


def first_copies(
    bronze_events: DataFrame, *, timezone: str, key: str | None = None, firsts: DataFrame | None = None
) -> DataFrame:
    """One row per ``event_id`` of ``bronze_events``, its first copy, typed (STORED_COLUMNS),
    its user ids pseudonymised under ``key`` when there is one (``jobs.privacy``).

    ``event_date`` is NULL when Spark cannot read ``event_time``: such an event is in no date,
    but silver remembers it so that a later copy of the same id is not taken in its place.

    Without ``firsts``, every row is sent to its id's task and sorted there. With it
    (:func:`first_of_repeated` of the same bronze, none ``doubled``, few enough to send to every
    task), a row is kept where it is read when its id has one copy or its coordinates are its
    id's first: nothing is shuffled or sorted, and the rows are the same.
    """
    if firsts is None:
        first_copy = Window.partitionBy("event_id").orderBy(*COORDINATES)
        kept = bronze_events.withColumn("_copy", F.row_number().over(first_copy)).where(F.col("_copy") == 1)
    else:
        first = F.broadcast(firsts.select("event_id", F.col("first").alias("_first")))
        kept = bronze_events.join(first, on="event_id", how="left").where(
            F.col("_first").isNull() | (_coordinates() == F.col("_first"))
        )
    events = (
        kept
        # RFC 3339 allows "t" and "z"; Spark's cast only reads upper case (and under ANSI mode
        # fails the whole job otherwise). Upper-casing touches nothing else in the string.
        .withColumn("event_time", F.expr("try_cast(upper(event_time) AS timestamp)"))
        .withColumn("event_date", local_date("event_time", timezone))
        .select(*STORED_COLUMNS)
    )
    return pseudonymise(events, EVENT_ID_COLUMNS, key)


def _id_hash() -> Column:
    return F.xxhash64("event_id")


def with_id_hash(events: DataFrame) -> DataFrame:
    """Stored events with :data:`ID_HASH`, as silver's files hold them."""
    return events.withColumn(ID_HASH, _id_hash())


def dates_to_compare(held: DataFrame, candidates: DataFrame) -> DataFrame:
    """The ``event_date``s (NULL: unparsed copies) of the ``held`` rows (silver's files read as
    :data:`ID_INDEX_SCHEMA`) that may be a copy of one of ``candidates``: their hash is one of
    the candidates' ids', or they have none. ``candidates`` must be few enough to send to every
    task (:func:`earlier_copies` with ``broadcast_ids``); the held ids of other dates cannot be
    theirs."""
    # One pass over the held hashes: a left join keeps the rows without one (NULL matches none).
    hashes = F.broadcast(candidates.select(_id_hash().alias(ID_HASH), F.lit(True).alias("_new")))
    compared = held.join(hashes, on=ID_HASH, how="left").where(F.col(ID_HASH).isNull() | F.col("_new"))
    return compared.select("event_date").distinct()


def earlier_copies(candidates: DataFrame, held: DataFrame, *, broadcast_ids: bool = False) -> DataFrame:
    """The ``candidates`` (first copies of new bronze) earlier than what silver holds.

    ``held`` is silver's (``event_id``, coordinates, ``event_date``). A candidate stays when
    silver has no copy of its id or a later one; ``replaced_date`` is then the date of the held
    copy that goes (NULL when none goes; ``event_date`` of an unparsed copy is NULL too, so
    ``replaces`` says whether one goes).

    With ``broadcast_ids`` (for candidates few enough to send to every task), the held copies
    of the candidates' ids are found first by probing each held row against the broadcast ids,
    so silver's rows are read but neither shuffled nor sorted; the result is the same.
    """
    if broadcast_ids:
        held = held.join(F.broadcast(candidates.select("event_id")), on="event_id", how="inner")
    silver = held.select(
        "event_id", _coordinates().alias("_held"), F.col("event_date").alias("replaced_date")
    )
    return (
        candidates.join(silver, on="event_id", how="left")
        .where(F.col("_held").isNull() | (_coordinates() < F.col("_held")))
        .withColumn("replaces", F.col("_held").isNotNull())
        .drop("_held")
    )


def with_person(events: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Stored silver events (dated ones) as ``silver.events``: with ``person_id``."""
    return conform(person_of(events, identity_map), tables.SILVER_EVENTS)


def person_of(rows: DataFrame, identity_map: DataFrame) -> DataFrame:
    """``rows`` (with ``platform`` and ``user_id``) and the ``person_id`` of their account, NULL
    for an account the map lacks."""
    persons = identity_map.select("platform", "user_id", "person_id")
    return rows.join(persons, on=["platform", "user_id"], how="left")


def accounts(events: DataFrame) -> DataFrame:
    """The (``platform``, ``user_id``) of dated events: the accounts identity resolution sees."""
    return events.where(F.col("event_date").isNotNull()).select("platform", "user_id")


def links(bronze_identity: DataFrame, key: str | None = None) -> DataFrame:
    """The account links of bronze, their account ids pseudonymised under ``key`` if given."""
    selected = bronze_identity.select("link_id", "kuaishou_user_id", "wechat_openid", "wechat_unionid", "linked_at")
    return pseudonymise(selected, LINK_ID_COLUMNS, key)


def build_silver(
    bronze_events: DataFrame, bronze_identity: DataFrame, *, timezone: str, key: str | None = None
) -> tuple[DataFrame, DataFrame]:
    """Silver ``events`` (with ``person_id``) and ``identity_map`` from the whole of bronze."""
    events = first_copies(bronze_events, timezone=timezone, key=key).where(F.col("event_date").isNotNull())
    identity_map = build_identity_map(accounts(events), links(bronze_identity, key))
    return with_person(events, identity_map), identity_map
