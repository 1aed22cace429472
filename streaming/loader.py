"""The streaming loader: a Kafka consumer group that lands every message in bronze or quarantine.

For every message consumed exactly one of bronze or quarantine holds it (DESIGN section 3):

* ``route`` (pure, unit-tested on bytes) validates one message against the contract and turns
  it into a bronze row or a quarantine row with the reason. Each poll's records of a partition
  go through ``streaming.fast_route.route_batch``, which gives the same rows: it accepts the
  messages it can prove valid in bulk with pyarrow and hands every other one to ``route``.
  Routing runs one poll behind on a thread of its own, so that pyarrow's work (without the
  GIL) overlaps kafka-python decoding the next poll; a poll joins the batch, in order, before
  anything reads the batch (the next poll's turn, a publish, a rebalance, a stop).
* Records are gathered into a batch bounded by count, bytes and age, then published: dead
  letters (acknowledged by the broker), then per partition the quarantine and bronze files
  named by the offset range, then the range's commit in the partition's commit log
  (``core.loader_log``); only then are the Kafka offsets committed. The commit log is the
  truth: on (re)assignment the loader resumes after the last committed offset, so a crash at
  any moment neither loses nor doubles a record.
* Dead letters are at-least-once: a crash after the dead letters were acknowledged but before
  the range's commit sends them again on replay. The quarantine table is exact.
* A member writes only partitions it still owns: checked in its own view before and after the
  dead letters, then confirmed by the group coordinator. A member frozen after that (a GC
  pause, SIGSTOP) may still write after thawing, when another member owns the partition; the
  commit is created exclusively, so one of the two commits the range and the other drops it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from core import loader_log
from core.contract import (
    DEADLETTER_TOPIC,
    EVENT_FIELDS,
    EVENT_TOPICS,
    IDENTITY_FIELDS,
    IDENTITY_TOPIC,
    Rejection,
    validate,
)
from core.errors import UserError
from core.layout import QUARANTINE, OffsetRange, bronze_table_for
from core.settings import Settings
from core.storage import warehouse_store
from streaming import bronze
from streaming.fast_route import RoutedBatch, route_batch

log = logging.getLogger("engagement.loader")

ERROR_HEADER_PREFIX = "engagement.errors."


# --------------------------------------------------------------------------------------------
# Pure routing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Routed:
    """Where one message goes: ``table`` is a bronze table or ``QUARANTINE``."""

    table: str
    row: dict[str, Any]
    rejection: Rejection | None = None


def route(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    ingest_time: datetime,
) -> Routed:
    """Validate one message and build its bronze or quarantine row."""
    kafka_time = (
        datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc) if timestamp_ms is not None and timestamp_ms >= 0 else None
    )
    result = validate(topic, value)
    if isinstance(result, Rejection):
        return Routed(
            QUARANTINE,
            {
                "kafka_topic": topic,
                "kafka_partition": partition,
                "kafka_offset": offset,
                "kafka_key": key,
                "kafka_timestamp": kafka_time,
                "value": value,
                "error_class": result.error_class,
                "error_message": result.message,
                "ingest_time": ingest_time,
            },
            result,
        )
    fields = IDENTITY_FIELDS if topic == IDENTITY_TOPIC else EVENT_FIELDS
    row = {name: result.get(name) for name in fields}
    extra = {k: v for k, v in result.items() if k not in fields}
    row["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None
    row.update(
        kafka_topic=topic,
        kafka_partition=partition,
        kafka_offset=offset,
        kafka_key=key.decode("utf-8", errors="replace") if key is not None else None,
        kafka_timestamp=kafka_time,
        ingest_time=ingest_time,
    )
    return Routed(bronze_table_for(topic, IDENTITY_TOPIC), row)


def dead_letter_headers(topic: str, partition: int, offset: int, rejection: Rejection) -> list[tuple[str, bytes]]:
    """Headers naming the source and the error, the way Kafka Connect's dead-letter queue does."""
    values = {
        "topic": topic,
        "partition": str(partition),
        "offset": str(offset),
        "class": rejection.error_class,
        "message": rejection.message,
    }
    return [(ERROR_HEADER_PREFIX + k, v.encode("utf-8")) for k, v in values.items()]


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------
@dataclass
class _PartitionBatch:
    topic: str
    partition: int
    first: int
    last: int = -1
    # The bronze rows, one table per poll (in offset order), and how many they are.
    rows: list[pa.Table] = field(default_factory=list)
    bronze_rows: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    bytes: int = 0

    def bronze_table(self, schema: pa.Schema) -> pa.Table:
        """The batch's bronze rows as one table of ``schema``."""
        return pa.concat_tables(self.rows) if self.rows else schema.empty_table()


@dataclass
class Batch:
    """Records gathered since the last publish, per partition, with their size."""

    parts: dict[tuple[str, int], _PartitionBatch] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    started: float = 0.0

    def add(self, records: list[Any], routed: RoutedBatch) -> None:
        """Add one poll's records of one partition (in offset order) and their routing."""
        if not records:
            return
        first = records[0]
        key = (first.topic, first.partition)
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = _PartitionBatch(first.topic, first.partition, first.offset)
        if not self.records:
            self.started = time.monotonic()
        part.last = records[-1].offset
        if routed.bronze.num_rows:
            part.rows.append(routed.bronze)
            part.bronze_rows += routed.bronze.num_rows
        part.quarantined.extend(routed.quarantined)
        size = sum(len(record.value or b"") + len(record.key or b"") for record in records)
        part.bytes += size
        self.records += len(records)
        self.bytes += size

    def drop(self, topic: str, partition: int) -> _PartitionBatch | None:
        """Forget one partition's records (they were not published, so they are read again)."""
        part = self.parts.pop((topic, partition), None)
        if part is not None:
            self.records -= part.bronze_rows + len(part.quarantined)
            self.bytes -= part.bytes
        return part

    def __bool__(self) -> bool:
        return bool(self.parts)


# --------------------------------------------------------------------------------------------
# Statistics shown to operators
# --------------------------------------------------------------------------------------------
@dataclass
class LoaderStats:
    consumed: int = 0
    bronze_rows: int = 0
    quarantined: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0
    batches: int = 0
    last_commit: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    lag: dict[str, int] = field(default_factory=dict)
    events_per_second: float = 0.0
    stopped_at: str | None = None


class LoaderError(UserError):
    """The loader cannot go on safely without an operator; the message says what to do."""


class _Abandoned(Exception):
    """A stop was requested while the batch could not be published (broker away)."""


# Client settings. kafka-python 3 backs off reconnects exponentially up to 30 s by default, so
# after a broker restart a loader would sit idle for up to half a minute; a 1 s ceiling keeps
# the outage as short as the broker's. Timeouts are bounded so that SIGTERM is served promptly
# even while the broker is away (a blocking call never outlasts them).
_RECONNECT_BACKOFF_MAX_MS = 1_000
_BOOTSTRAP_TIMEOUT_MS = 15_000
_REQUEST_TIMEOUT_MS = 15_000
_COMMIT_TIMEOUT_MS = 10_000
_LAG_TIMEOUT_MS = 5_000
_DEAD_LETTER_MAX_BLOCK_MS = 5_000
_DEAD_LETTER_DELIVERY_TIMEOUT_MS = 30_000
_CLOSE_TIMEOUT_MS = 5_000
# After SIGTERM, dead letters already on their way get this long to be acknowledged before the
# batch is abandoned (a healthy broker answers in milliseconds; a missing one never does).
_STOP_GRACE_S = 5.0
_POLL_TIMEOUT_MS = 500
# The GIL switch interval while the loader runs (see Loader.run; Python's default is 5 ms).
_SWITCH_INTERVAL_S = 0.0005
_REPORT_EVERY_S = 10.0
# An --until-idle loader with no partitions assigned waits this long before it exits.
_EMPTY_IDLE_S = 10.0


# --------------------------------------------------------------------------------------------
# The consumer loop
# --------------------------------------------------------------------------------------------
class Loader:
    """One consumer of the loader group. ``run()`` until stopped, or until idle if asked."""

    def __init__(
        self,
        settings: Settings,
        *,
        until_idle: bool = False,
        idle_seconds: float = 5.0,
        progress: Callable[[LoaderStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = warehouse_store(settings)
        self.until_idle = until_idle
        self.idle_seconds = idle_seconds
        self.progress = progress
        self.stats = LoaderStats()
        self.batch = Batch()
        self._stopping = False
        self._stop_seen: float | None = None
        self._abandoned = False
        self._consumer = None
        self._producer = None
        # Offsets whose data is durable in bronze but not yet committed to Kafka (a failed
        # commit, or a resume point found on assignment); sent with the next commit.
        self._to_commit: dict[Any, int] = {}
        # Per partition, the next offset bronze expects: where the last commit ended.
        self._durable_next: dict[Any, int] = {}
        # Per revoked partition, the first offset of the records dropped with it, until the
        # assignment that follows: where to read again should the partition stay with us.
        self._dropped_from: dict[Any, int] = {}
        # Set by the first on_partitions_assigned: until then "no partitions" means "not
        # joined yet", not "nothing to do".
        self._joined = False
        self._assigned_at = 0.0
        # Routing runs one poll behind, on a thread of its own: while the main thread waits in
        # poll() (kafka-python decoding the next records), the last poll is validated (pyarrow
        # parses and checks without the GIL). Each entry is a poll's records of one partition and
        # the future of their routing; they join the batch in order, before anything reads it.
        self._router = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engagement-route")
        self._routing: list[tuple[list[Any], Future]] = []
        self.status_file = settings.home / "loader" / f"{socket.gethostname()}-{os.getpid()}.json"

    # -- lifecycle -----------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Ask the loop to finish the batch, commit what is durable and exit (SIGTERM/SIGINT)."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> LoaderStats:
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        from kafka.errors import KafkaError

        s = self.settings
        topics = [*EVENT_TOPICS, IDENTITY_TOPIC]
        common = {
            "bootstrap_servers": s.bootstrap_servers.split(","),
            "reconnect_backoff_max_ms": _RECONNECT_BACKOFF_MAX_MS,
            "bootstrap_timeout_ms": _BOOTSTRAP_TIMEOUT_MS,
            "request_timeout_ms": _REQUEST_TIMEOUT_MS,
        }
        try:
            self._consumer = KafkaConsumer(
                **common,
                group_id=s.consumer_group,
                client_id=f"engagement-loader-{os.getpid()}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=min(2000, s.loader_batch_max_records),
                # Bounded fetch buffers: with the batch bounds these cap the loader's memory
                # whatever the backlog. A partition fetch must still hold the broker's largest
                # message (message.max.bytes, ~1 MiB), or that partition would stall. 8 MiB a
                # partition (kafka-python's default is 1 MiB) and 32 MiB a fetch (default 50)
                # rather than 2 and 8: fewer round trips to the broker made whole loads of a 2M
                # backlog take 0.85-0.92x the time, for ~60-180 MiB more peak RSS.
                fetch_max_bytes=32 * 1024 * 1024,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                max_poll_interval_ms=s.loader_max_poll_interval_ms,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000,
                # Round robin over all the group's partitions, so that loaders share each topic's
                # traffic evenly (range, kafka-python's first choice, assigns per topic: with
                # three partitions a topic and two loaders, one of them gets two thirds).
                partition_assignment_strategy=(RoundRobinPartitionAssignor, RangePartitionAssignor),
            )
            self._producer = KafkaProducer(
                **common,
                client_id=f"engagement-deadletter-{os.getpid()}",
                acks="all",
                linger_ms=20,
                # Over the broker's limit on purpose: the broker, not the client, rejects a dead
                # letter that cannot be stored (see _send_dead_letters).
                max_request_size=2 * 1024 * 1024,
                max_block_ms=_DEAD_LETTER_MAX_BLOCK_MS,
                delivery_timeout_ms=_DEAD_LETTER_DELIVERY_TIMEOUT_MS,
            )
        except (KafkaError, OSError) as exc:  # 3.x raises KafkaTimeoutError when nobody answers
            self._close()
            raise LoaderError(
                f"no Kafka broker answers at {s.bootstrap_servers} ({exc}); start one with "
                "`engagement kafka start` or set ENGAGEMENT_BOOTSTRAP_SERVERS"
            ) from exc
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        loader = self

        # kafka-python 3 calls these on its network thread while the main thread waits inside
        # poll(), so they may touch the batch but must not call blocking consumer methods
        # (committed(), position(), commit() raise there).
        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):  # noqa: D401 - kafka-python callback
                loader._on_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                loader._on_assigned(assigned)

        self._consumer.subscribe(topics, listener=_Listener())
        log.info("loader started: group=%s topics=%s", s.consumer_group, ",".join(topics))
        started = time.monotonic()
        # The routing thread gets the GIL back soon after each pyarrow call it makes without it;
        # at Python's default 5 ms it would wait behind the decoding main thread for most of that.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        try:
            self._loop()
        finally:
            sys.setswitchinterval(switch_interval)
            try:
                # Finish the batch and commit what is durable, unless the broker already proved
                # unreachable during this stop (then waiting longer only delays the exit).
                self._add_routed()
                if self.batch and not self._abandoned:
                    self._publish()
                if not self._abandoned:
                    self._commit_pending()
            except _Abandoned:
                pass
            finally:
                self.stats.stopped_at = datetime.now(timezone.utc).isoformat()
                self._write_status()
                self._close()
                self._router.shutdown(wait=True)
        seconds = time.monotonic() - started
        log.info(
            "loader stopped after %.0f s: consumed=%d (%.0f/s on average) bronze=%d quarantined=%d dead_lettered=%d "
            "lag=%d last_commit=%s",
            seconds,
            self.stats.consumed,
            self.stats.consumed / max(seconds, 1e-6),
            self.stats.bronze_rows,
            self.stats.quarantined,
            self.stats.dead_lettered,
            sum(self.stats.lag.values()),
            self.stats.last_commit or "never",
        )
        return self.stats

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False, timeout_ms=_CLOSE_TIMEOUT_MS)
            except Exception as exc:  # leaving the group is best effort; the session expires anyway
                log.warning("closing the consumer failed: %s", exc)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=_CLOSE_TIMEOUT_MS / 1000)
            except Exception as exc:
                # kafka-python 3's close() flushes first and raises when the broker is away,
                # before it stops its sender thread (its __del__ then fails the same way). The
                # letters still queued belong to an abandoned batch, which sends them again.
                log.warning("dead letters still queued at exit were dropped (%s); their batch was not published", exc)
                sender = getattr(self._producer, "_sender", None)
                if sender is not None:
                    sender.force_close()
                self._producer._closed = True
            self._producer = None

    def _add_routed(self) -> None:
        """Add the polls routed so far to the batch, in the order they were polled."""
        routing, self._routing = self._routing, []
        for records, routed in routing:
            self.batch.add(records, routed.result())
            self.stats.consumed += len(records)

    # -- rebalance -----------------------------------------------------------------------
    def _on_revoked(self, revoked) -> None:
        # Records not yet published are not committed either; the next owner reads them again
        # (with the eager protocol this runs before the group moves them anywhere). The polls
        # still being routed are part of the batch: they are dropped with it, or they would join
        # it after the partition was read again from its first offset.
        self._add_routed()
        for tp in revoked:
            part = self.batch.drop(tp.topic, tp.partition)
            if part is not None:
                self._dropped_from[tp] = part.first
            self._to_commit.pop(tp, None)
        if revoked:
            log.info("partitions revoked: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(revoked)))

    def _on_assigned(self, assigned) -> None:
        self._add_routed()  # polls still being routed join the batch before any seek below
        for tp in assigned:
            table = bronze_table_for(tp.topic, IDENTITY_TOPIC)
            resume = bronze.recover_partition(self.store, table, tp.topic, tp.partition)
            if resume is None:
                # Nothing durable yet: Kafka's committed offset (or earliest) decides, but
                # kafka-python keeps the position of a partition that stays assigned, past the
                # records dropped with the batch at revocation: read those again.
                if tp in self._dropped_from:
                    self._consumer.seek(tp, self._dropped_from[tp])
                continue
            # The commit log is the truth: Kafka commits only ever follow it, so Kafka's committed
            # offset is never ahead of it, and it is behind it after a crash between publish and
            # Kafka commit. Seek there and let the next commit catch Kafka up.
            self._consumer.seek(tp, resume)
            self._to_commit[tp] = resume
            self._durable_next[tp] = resume
        self._dropped_from.clear()  # partitions gone elsewhere: their new owner reads them
        self._joined = True
        self._assigned_at = time.monotonic()
        log.info("partitions assigned: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none")

    def _owns(self, tp) -> bool:
        """Whether this member may still publish ``tp``: a stable member that has it assigned.

        A member that was evicted (session or poll interval expired) finds out here before it
        writes a file for a partition another loader may be reading by now.
        """
        from kafka.structs import MemberState

        return self._consumer.group_metadata().state == MemberState.STABLE and tp in self._consumer.assignment()

    # -- main loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        from kafka.errors import KafkaError

        s = self.settings
        last_report = time.monotonic()
        last_records = 0
        idle_since: float | None = None
        while not self._stopping:
            try:
                polled = self._consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=min(2000, s.loader_batch_max_records))
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                # The broker is away or moving things: nothing is lost by polling again.
                log.warning("poll failed (%s); retrying", exc)
                time.sleep(0.5)
                polled = {}
            ingest_time = datetime.now(timezone.utc)
            self._add_routed()
            for records in polled.values():
                if not records:
                    continue
                routing = self._router.submit(
                    route_batch,
                    records[0].topic,
                    records[0].partition,
                    [record.offset for record in records],
                    [record.key for record in records],
                    [record.value for record in records],
                    [record.timestamp for record in records],
                    ingest_time,
                )
                self._routing.append((records, routing))
            now = time.monotonic()
            if self.batch and (
                self.batch.records >= s.loader_batch_max_records
                or self.batch.bytes >= s.loader_batch_max_bytes
                or now - self.batch.started >= s.loader_batch_max_seconds
                or not polled
            ):
                try:
                    self._add_routed()
                    self._publish()
                except _Abandoned:
                    self._abandoned = True
                    break
            elif self._to_commit and not polled:
                self._commit_pending()
            now = time.monotonic()
            if now - last_report >= _REPORT_EVERY_S:
                self.stats.events_per_second = (self.stats.consumed - last_records) / (now - last_report)
                last_report, last_records = now, self.stats.consumed
                self._refresh_lag()
                self._report()
            if self.until_idle:
                # Idle means: nothing came, nothing is pending, and the assignment has not changed
                # for a whole idle period (a new group's first assignment is often empty and is
                # followed by the real one a moment later).
                if polled or self.batch or self._to_commit or (idle_since is not None and self._assigned_at > idle_since):
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self._idle_needed() and self._caught_up():
                    break

    def _idle_needed(self) -> float:
        """How long nothing must happen before --until-idle exits: longer while nothing is assigned.

        The group's leader assigns the partitions its metadata holds, and a new group's first
        assignment is often empty: the real one follows with the leader's next metadata update,
        which took seconds when workers started together. A worker that has nothing assigned
        waits at least _EMPTY_IDLE_S before it takes "none" for "nothing to do".
        """
        if not self._consumer.assignment():
            return max(self.idle_seconds, _EMPTY_IDLE_S)
        return self.idle_seconds

    def _caught_up(self) -> bool:
        """Joined the group, and at the log end of every assigned partition (if any)."""
        from kafka.structs import MemberState

        if not self._joined or self._consumer.group_metadata().state != MemberState.STABLE:
            return False  # still joining or rebalancing: partitions may be on their way
        lag = self._refresh_lag()
        return lag is not None and all(v == 0 for v in lag.values())

    def _refresh_lag(self) -> dict[str, int] | None:
        """Per assigned partition, the log end minus our position; None when unknown."""
        assigned = sorted(self._consumer.assignment())
        if not assigned:
            self.stats.lag = {}
            return {}
        try:
            ends = self._consumer.end_offsets(assigned, timeout_ms=_LAG_TIMEOUT_MS)
            positions = {tp: self._consumer.position(tp, timeout_ms=_LAG_TIMEOUT_MS) for tp in assigned}
        except Exception as exc:  # broker unreachable, or a rebalance took a partition: unknown
            log.warning("could not read end offsets: %s", exc)
            return None
        if any(positions[tp] is None or ends.get(tp) is None for tp in assigned):
            return None
        lag = {f"{tp.topic}[{tp.partition}]": max(0, ends[tp] - positions[tp]) for tp in assigned}
        self.stats.lag = lag
        return lag

    # -- publishing ----------------------------------------------------------------------
    def _publish(self) -> None:
        """Publish the batch: dead letters, then per partition the files and the range's commit,
        then the Kafka commit.

        Only partitions this member still owns are written; ownership is checked again after the
        dead letters went out, because waiting for an absent broker can outlast
        max_poll_interval_ms and cost the membership. Raises :class:`_Abandoned` when a stop was
        requested while the dead letters could not be delivered; nothing of the batch is
        written then, and it is read again next time.
        """
        parts = self._owned_parts(self.batch.parts.values())
        self.batch = Batch()
        try:
            self._send_dead_letters([row for part in parts for row in part.quarantined])
        except _Abandoned:
            log.warning("stop requested while dead letters could not be sent: batch abandoned, it is read again next time")
            self._abandoned = True
            raise
        from kafka.structs import TopicPartition

        for part in self._confirm_membership(self._owned_parts(parts)):
            tp = TopicPartition(part.topic, part.partition)
            self._check_continuity(tp, part)
            table_name = bronze_table_for(part.topic, IDENTITY_TOPIC)
            try:
                commit = bronze.publish_range(
                    self.store,
                    table_name,
                    part.topic,
                    part.partition,
                    OffsetRange(part.first, part.last),
                    part.bronze_table(bronze.SCHEMAS[table_name]),
                    bronze.rows_table(part.quarantined, bronze.QUARANTINE_SCHEMA),
                )
            except FileNotFoundError:
                commit = None  # another loader's recovery tidied this partition: it owns it now
            if commit is None or commit.last != part.last:
                self._lost_race(tp, part, commit)
                continue
            self.stats.bronze_rows += part.bronze_rows
            self.stats.quarantined += len(part.quarantined)
            self._to_commit[tp] = part.last + 1
            self._durable_next[tp] = part.last + 1
        self.stats.batches += 1
        self._commit_pending()
        self._write_status()

    def _check_continuity(self, tp, part: _PartitionBatch) -> None:
        """Refuse to write offsets bronze already holds; warn about offsets Kafka no longer has.

        Offsets below the last commit mean the partition's log started again (the topic was
        deleted and re-created): its new offsets would be filed under names of old files and
        could replace them. That needs an operator, not a guess.
        """
        expected = self._durable_next.get(tp)
        if expected is None or part.first == expected:
            return
        if part.first < expected:
            raise LoaderError(
                f"{tp.topic}[{tp.partition}] delivered offset {part.first}, but bronze already holds this "
                f"partition up to offset {expected - 1}: the topic was probably deleted and re-created. "
                f"Nothing was written. Move {self.store.url(bronze_table_for(tp.topic, IDENTITY_TOPIC))} "
                "and the quarantine aside (or use a new ENGAGEMENT_HOME) before loading the new topic."
            )
        log.warning(
            "%s[%d]: offsets %d-%d were gone from Kafka before they were loaded (retention?); continuing at %d",
            tp.topic, tp.partition, expected, part.first - 1, part.first,
        )  # fmt: skip

    def _owned_parts(self, parts) -> list[_PartitionBatch]:
        """The partition batches this member may still publish; the others are dropped."""
        from kafka.structs import TopicPartition

        owned = []
        for part in parts:
            tp = TopicPartition(part.topic, part.partition)
            if self._owns(tp):
                owned.append(part)
                continue
            log.warning(
                "not publishing %s[%d] offsets %d-%d: the partition is no longer ours",
                part.topic, part.partition, part.first, part.last,
            )  # fmt: skip
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, part.first)  # read it again should it stay ours
        return owned

    def _confirm_membership(self, parts: list[_PartitionBatch]) -> list[_PartitionBatch]:
        """Ask the group coordinator, not our own view, whether these partitions are still ours.

        After a stall (a long GC pause, a frozen VM, SIGSTOP) the consumer still believes it is
        a stable member until its next heartbeat or poll, while the group may have evicted it
        and given its partitions to another loader. A synchronous commit of what bronze already
        holds (each partition's first offset in this batch: nothing new) is accepted only from a
        member of the current generation, so a refusal means: write nothing; the partitions'
        owner reads the batch again. (Tested by stalling a loader with SIGSTOP.)
        """
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        if not parts:
            return parts
        offsets = {TopicPartition(p.topic, p.partition): OffsetAndMetadata(p.first, "", -1) for p in parts}
        try:
            self._consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            log.warning(
                "not publishing offsets of %d partition(s): the group coordinator did not confirm this "
                "loader's membership (%s); they are read again by whoever owns them",
                len(parts), exc,
            )  # fmt: skip
            assigned = self._consumer.assignment()
            for tp, meta in offsets.items():
                if tp in assigned:
                    self._consumer.seek(tp, meta.offset)
            return []
        return parts

    def _lost_race(self, tp, part: _PartitionBatch, commit) -> None:
        """Another loader committed this range's first offset before us: forget the batch.

        Happens to a loader that was frozen after its membership was confirmed and evicted
        meanwhile; its files are gone (``bronze.publish_range``), and if the partition is still
        (or again) ours, reading resumes where the commit log ends.
        """
        log.warning(
            "not publishing %s[%d] offsets %d-%d: %s (this loader was probably evicted from the group "
            "while it was stalled)",
            tp.topic, tp.partition, part.first, part.last,
            f"another loader committed offsets {commit.first}-{commit.last} first" if commit
            else "another loader took the partition over and removed this loader's unfinished file",
        )  # fmt: skip
        self._to_commit.pop(tp, None)
        self._durable_next.pop(tp, None)
        if tp in self._consumer.assignment():
            table = bronze_table_for(tp.topic, IDENTITY_TOPIC)
            resume = loader_log.next_offset(self.store, table, tp.topic, tp.partition)
            self._consumer.seek(tp, resume if resume is not None else part.first)
            if resume is not None:
                self._durable_next[tp] = resume

    def _commit_pending(self) -> None:
        """Commit the offsets bronze already holds; on failure keep them for the next try."""
        from kafka.structs import OffsetAndMetadata

        if not self._to_commit or self._consumer is None:
            return
        # Never commit for a partition that moved to another loader: its new owner commits it.
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._to_commit.items() if self._owns(tp)}
        for tp in set(self._to_commit) - set(offsets):
            del self._to_commit[tp]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
        except Exception as exc:
            # Bronze already holds the data and is what a restart resumes from; the next commit
            # catches Kafka up.
            log.warning("offset commit failed (%s); bronze is durable, will commit again", exc)
            return
        for tp, meta in offsets.items():
            if self._to_commit.get(tp) == meta.offset:
                del self._to_commit[tp]
        self.stats.last_commit = datetime.now(timezone.utc).isoformat()

    def _send_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        """Send each row to the dead-letter topic and wait until the broker has them all.

        Retries what failed with back-off while the broker is away (a restart, the network);
        gives up on a letter the broker will never accept (larger than its message.max.bytes:
        quarantine keeps the original). Raises :class:`_Abandoned` if a stop is requested
        meanwhile.
        """
        from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

        pending = rows
        delay = 0.5
        while pending:
            sent = []
            failed: list[tuple[dict[str, Any], BaseException]] = []
            for row in pending:
                try:
                    future = self._producer.send(
                        DEADLETTER_TOPIC,
                        key=row["kafka_key"],
                        value=row["value"],
                        headers=dead_letter_headers(
                            row["kafka_topic"],
                            row["kafka_partition"],
                            row["kafka_offset"],
                            Rejection(row["error_class"], row["error_message"]),
                        ),
                    )
                    sent.append((row, future))
                except KafkaError as exc:  # no metadata within max_block_ms: broker away
                    failed.append((row, exc))
            # Wait for every answer (delivery_timeout_ms bounds it), but keep an ear on SIGTERM.
            waiting_since = time.monotonic()
            next_warning = waiting_since + _REPORT_EVERY_S
            while not all(future.is_done for _, future in sent):
                if self._stop_grace_over():
                    raise _Abandoned()
                try:
                    self._producer.flush(timeout=1.0)
                except KafkaError:
                    pass
                if time.monotonic() >= next_warning:
                    next_warning += _REPORT_EVERY_S
                    log.warning(
                        "waiting %.0f s for the broker to acknowledge %d dead letter(s); is it running?",
                        time.monotonic() - waiting_since, sum(not f.is_done for _, f in sent),
                    )  # fmt: skip
            for row, future in sent:
                if future.succeeded():
                    self.stats.dead_lettered += 1
                elif isinstance(future.exception, (MessageSizeTooLargeError, RecordListTooLargeError)):
                    self.stats.dead_letter_failures += 1
                    log.error(
                        "dead letter for %s[%d]@%d refused by the broker (%s); quarantine keeps the original",
                        row["kafka_topic"], row["kafka_partition"], row["kafka_offset"], future.exception,
                    )  # fmt: skip
                else:
                    failed.append((row, future.exception))
            pending = [row for row, _ in failed]
            if pending:
                log.warning(
                    "%d dead letter(s) not delivered (%s); retrying in %.1f s", len(pending), failed[0][1], delay
                )
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def _stop_grace_over(self) -> bool:
        if not self._stopping:
            return False
        if self._stop_seen is None:
            self._stop_seen = time.monotonic()
        return time.monotonic() - self._stop_seen >= _STOP_GRACE_S

    def _sleep(self, seconds: float) -> None:
        """Sleep, but raise :class:`_Abandoned` as soon as a stop is requested."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping:
                raise _Abandoned()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    # -- reporting -----------------------------------------------------------------------
    def _report(self) -> None:
        lag = self.stats.lag
        log.info(
            "consumed=%d (%.0f/s) bronze=%d quarantined=%d dead_lettered=%d lag=%d last_commit=%s%s",
            self.stats.consumed,
            self.stats.events_per_second,
            self.stats.bronze_rows,
            self.stats.quarantined,
            self.stats.dead_lettered,
            sum(lag.values()),
            self.stats.last_commit or "never",
            (" (" + ", ".join(f"{name}={value}" for name, value in sorted(lag.items()) if value) + ")")
            if any(lag.values())
            else "",
        )
        if self.progress:
            self.progress(self.stats)
        self._write_status()

    def _write_status(self) -> None:
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "updated": datetime.now(timezone.utc).isoformat(), **asdict(self.stats)}, indent=2))
        os.replace(tmp, self.status_file)


# --------------------------------------------------------------------------------------------
# Several loaders of one group, as child processes
# --------------------------------------------------------------------------------------------
_SUMMED = ("consumed", "bronze_rows", "quarantined", "dead_lettered", "dead_letter_failures", "batches")


def run_workers(settings: Settings, count: int, *, until_idle: bool, idle_seconds: float) -> LoaderStats:
    """Run ``count`` loaders of the group as child processes until all have exited; their totals.

    kafka-python decodes each record in Python, under the GIL, so one loader keeps about one
    core busy; the group's partitions are Kafka's unit of parallelism. Each child is
    ``engagement load --workers 1`` with this process's environment (so the same settings), and
    the group coordinator shares the partitions out. SIGTERM and SIGINT are passed on: each child
    publishes its batch, commits and exits. When a child fails, the others are stopped the same
    way and the loader fails: a supervisor then restarts it whole, rather than some of it running
    on at a fraction of its throughput.
    """
    command = [sys.executable, "-m", "engagement.cli", "load", "--workers", "1"]
    if until_idle:
        command += ["--until-idle", "--idle-seconds", str(idle_seconds)]
    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed: subprocess.Popen | None = None
    try:
        children += [subprocess.Popen(command, preexec_fn=_stop_with_parent) for _ in range(count)]
        log.info("started %d loader workers: pids %s", count, ", ".join(str(c.pid) for c in children))
        running = list(children)
        while running:
            time.sleep(0.2)
            for child in [c for c in running if c.poll() is not None]:
                running.remove(child)
                if child.returncode != 0 and failed is None:
                    failed = child
                    log.error("loader worker %d exited with %d: stopping the others", child.pid, child.returncode)
                    stop()
    finally:
        stop()  # on an exception here (none expected), no child outlives the parent's wait
        for child in children:
            child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise LoaderError(
            f"loader worker {failed.pid} exited with {failed.returncode} (its error is above); the other "
            f"{count - 1} worker(s) were stopped after committing what they had published"
        )
    total = LoaderStats()
    by_pid = {status.get("pid"): status for status in read_loader_status(settings.home)}
    for child in children:
        status = by_pid.get(child.pid, {})
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + int(status.get(name, 0)))
    return total


def _stop_with_parent() -> None:
    """In a child, before exec: have Linux send it SIGTERM when the parent dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a parent killed outright leaves its workers running, as separate loaders


def read_loader_status(home: Path) -> list[dict[str, Any]]:
    """The status files of loaders that ran under ``home`` (newest first)."""
    directory = home / "loader"
    if not directory.is_dir():
        return []
    import psutil

    host = socket.gethostname()
    out = []
    for path in directory.glob("*.json"):
        try:
            status = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        # Files are named <host>-<pid>.json; a pid can only be checked on its own host.
        pid = status.get("pid")
        status["running"] = bool(
            path.stem == f"{host}-{pid}" and status.get("stopped_at") is None and isinstance(pid, int) and psutil.pid_exists(pid)
        )
        out.append(status)
    return sorted(out, key=lambda s: s.get("updated", ""), reverse=True)
