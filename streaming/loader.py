"""The streaming loader: a Kafka consumer group that lands every message in bronze or quarantine.

For every message consumed exactly one of bronze or quarantine holds it (DESIGN section 3):

* ``route`` (pure, unit-tested on bytes) validates one message against the contract and turns
  it into a bronze row or a quarantine row with the reason.
* Records are gathered into a batch bounded by count, bytes and age, then published per
  partition: quarantine file, dead letters (flushed to the broker), then the bronze file whose
  name carries the offset range; only then are the offsets committed. The bronze file is the
  durable marker: on (re)assignment the loader resumes after the last marked offset (see
  ``streaming.bronze``), so a crash at any moment neither loses nor doubles a record.
* Dead letters are at-least-once: a crash after the dead-letter flush but before the bronze
  marker sends them again on replay. The quarantine table is exact.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from engagement.contract import EVENT_FIELDS, IDENTITY_FIELDS, Rejection, validate
from engagement.settings import DEADLETTER_TOPIC, IDENTITY_TOPIC, Settings
from streaming import bronze

log = logging.getLogger("engagement.loader")

ERROR_HEADER_PREFIX = "engagement.errors."


# --------------------------------------------------------------------------------------------
# Pure routing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Routed:
    """Where one message goes: ``table`` is a bronze table or ``bronze.QUARANTINE``."""

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
            bronze.QUARANTINE,
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
    return Routed(bronze.bronze_table_for(topic, IDENTITY_TOPIC), row)


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
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Batch:
    """Records gathered since the last publish, per partition, with their size."""

    parts: dict[tuple[str, int], _PartitionBatch] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    started: float = 0.0

    def add(self, record: Any, routed: Routed) -> None:
        key = (record.topic, record.partition)
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = _PartitionBatch(record.topic, record.partition, record.offset)
        if not self.records:
            self.started = time.monotonic()
        part.last = record.offset
        (part.quarantined if routed.rejection else part.rows).append(routed.row)
        self.records += 1
        self.bytes += len(record.value or b"") + len(record.key or b"")

    def drop(self, topic: str, partition: int) -> None:
        part = self.parts.pop((topic, partition), None)
        if part is not None:
            self.records -= len(part.rows) + len(part.quarantined)

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
    batches: int = 0
    last_commit: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    lag: dict[str, int] = field(default_factory=dict)
    events_per_second: float = 0.0


class LoaderError(RuntimeError):
    pass


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
        self.warehouse = settings.warehouse
        self.until_idle = until_idle
        self.idle_seconds = idle_seconds
        self.progress = progress
        self.stats = LoaderStats()
        self.batch = Batch()
        self._stopping = False
        self._consumer = None
        self._producer = None
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
        from kafka.errors import NoBrokersAvailable

        s = self.settings
        topics = [*s.event_topics, IDENTITY_TOPIC]
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=s.bootstrap_servers,
                group_id=s.consumer_group,
                client_id=f"engagement-loader-{os.getpid()}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=min(2000, s.loader_batch_max_records),
                fetch_max_bytes=8 * 1024 * 1024,
                max_partition_fetch_bytes=2 * 1024 * 1024,
                max_poll_interval_ms=300_000,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000,
            )
            self._producer = KafkaProducer(
                bootstrap_servers=s.bootstrap_servers,
                client_id=f"engagement-deadletter-{os.getpid()}",
                acks="all",
                linger_ms=20,
                max_request_size=2 * 1024 * 1024,
                retries=10,
            )
        except NoBrokersAvailable as exc:
            self._close()
            raise LoaderError(
                f"no Kafka broker answers at {s.bootstrap_servers}; start one with `engagement kafka start` "
                "or set ENGAGEMENT_BOOTSTRAP_SERVERS"
            ) from exc
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        loader = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):  # noqa: D401 - kafka-python callback
                loader._on_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                loader._on_assigned(assigned)

        self._consumer.subscribe(topics, listener=_Listener())
        log.info("loader started: group=%s topics=%s", s.consumer_group, ",".join(topics))
        try:
            self._loop()
        finally:
            if self.batch:
                self._publish()
            self._write_status()
            self._close()
        log.info(
            "loader stopped: consumed=%d bronze=%d quarantined=%d dead_lettered=%d",
            self.stats.consumed,
            self.stats.bronze_rows,
            self.stats.quarantined,
            self.stats.dead_lettered,
        )
        return self.stats

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None

    # -- rebalance -----------------------------------------------------------------------
    def _on_revoked(self, revoked) -> None:
        # Records not yet published are not committed either; the next owner reads them again.
        for tp in revoked:
            self.batch.drop(tp.topic, tp.partition)
        if revoked:
            log.info("partitions revoked: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    def _on_assigned(self, assigned) -> None:
        for tp in assigned:
            table = bronze.bronze_table_for(tp.topic, IDENTITY_TOPIC)
            resume = bronze.recover_partition(self.warehouse, table, tp.topic, tp.partition)
            if resume is None:
                continue
            committed = self._consumer.committed(tp)
            if committed is None or committed < resume:
                # Bronze is ahead of the commit (a crash between publish and commit): skip
                # what is already durable.
                self._consumer.seek(tp, resume)
        if assigned:
            log.info("partitions assigned: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    # -- main loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        s = self.settings
        last_report = time.monotonic()
        last_records = 0
        idle_since: float | None = None
        while not self._stopping:
            polled = self._consumer.poll(timeout_ms=500, max_records=min(2000, s.loader_batch_max_records))
            ingest_time = datetime.now(timezone.utc)
            for records in polled.values():
                for record in records:
                    routed = route(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.key,
                        record.value,
                        record.timestamp,
                        ingest_time,
                    )
                    self.batch.add(record, routed)
                    self.stats.consumed += 1
            if self.batch and (
                self.batch.records >= s.loader_batch_max_records
                or self.batch.bytes >= s.loader_batch_max_bytes
                or time.monotonic() - self.batch.started >= s.loader_batch_max_seconds
                or not polled
            ):
                self._publish()
            now = time.monotonic()
            if now - last_report >= 10:
                self.stats.events_per_second = (self.stats.consumed - last_records) / (now - last_report)
                last_report, last_records = now, self.stats.consumed
                self._refresh_lag()
                self._report()
            if self.until_idle:
                if polled or self.batch:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.idle_seconds and self._caught_up():
                    break

    def _caught_up(self) -> bool:
        lag = self._refresh_lag()
        return lag is not None and all(v == 0 for v in lag.values())

    def _refresh_lag(self) -> dict[str, int] | None:
        assigned = self._consumer.assignment()
        if not assigned:
            self.stats.lag = {}
            # Nobody to wait for: with no partitions after a full idle period we are done.
            return {}
        try:
            ends = self._consumer.end_offsets(list(assigned))
        except Exception as exc:  # broker unreachable: lag is unknown, not zero
            log.warning("could not read end offsets: %s", exc)
            return None
        lag = {f"{tp.topic}[{tp.partition}]": max(0, ends[tp] - self._consumer.position(tp)) for tp in assigned}
        self.stats.lag = lag
        return lag

    # -- publishing ----------------------------------------------------------------------
    def _publish(self) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        parts = list(self.batch.parts.values())
        self.batch = Batch()
        dead_letters = []
        for part in parts:
            if part.quarantined:
                table = pa.Table.from_pylist(part.quarantined, schema=bronze.QUARANTINE_SCHEMA)
                bronze.write_atomically(
                    table,
                    bronze.partition_dir(self.warehouse, bronze.QUARANTINE, part.topic, part.partition),
                    bronze.OffsetRange(part.first, part.last),
                )
                dead_letters.extend(part.quarantined)
        self._send_dead_letters(dead_letters)
        offsets = {}
        for part in parts:
            table_name = bronze.bronze_table_for(part.topic, IDENTITY_TOPIC)
            schema = bronze.BRONZE_IDENTITY_SCHEMA if table_name == bronze.BRONZE_IDENTITY else bronze.BRONZE_EVENTS_SCHEMA
            bronze.write_atomically(
                pa.Table.from_pylist(part.rows, schema=schema),
                bronze.partition_dir(self.warehouse, table_name, part.topic, part.partition),
                bronze.OffsetRange(part.first, part.last),
            )
            self.stats.bronze_rows += len(part.rows)
            self.stats.quarantined += len(part.quarantined)
            offsets[TopicPartition(part.topic, part.partition)] = OffsetAndMetadata(part.last + 1, "", -1)
        self.stats.batches += 1
        try:
            self._consumer.commit(offsets)
            self.stats.last_commit = datetime.now(timezone.utc).isoformat()
        except Exception as exc:
            # Bronze already holds the data and is what a restart resumes from; the next commit
            # catches Kafka up.
            log.warning("offset commit failed (%s); bronze is durable, will commit with the next batch", exc)
        self._write_status()

    def _send_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        from kafka.errors import KafkaError

        if not rows:
            return
        delay = 1.0
        while True:
            try:
                futures = [
                    self._producer.send(
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
                    for row in rows
                ]
                self._producer.flush(timeout=60)
                for future in futures:
                    future.get(timeout=60)
                self.stats.dead_lettered += len(rows)
                return
            except KafkaError as exc:
                # The broker is away (restart, network): keep the batch, retry with back-off.
                log.warning("dead-letter send failed (%s); retrying in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)

    # -- reporting -----------------------------------------------------------------------
    def _report(self) -> None:
        total_lag = sum(self.stats.lag.values())
        log.info(
            "consumed=%d (%.0f/s) bronze=%d quarantined=%d dead_lettered=%d lag=%d",
            self.stats.consumed,
            self.stats.events_per_second,
            self.stats.bronze_rows,
            self.stats.quarantined,
            self.stats.dead_lettered,
            total_lag,
        )
        if self.progress:
            self.progress(self.stats)

    def _write_status(self) -> None:
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "updated": datetime.now(timezone.utc).isoformat(), **asdict(self.stats)}, indent=2))
        os.replace(tmp, self.status_file)


def read_loader_status(home: Path) -> list[dict[str, Any]]:
    """The status files of loaders that ran under ``home`` (newest first)."""
    directory = home / "loader"
    if not directory.is_dir():
        return []
    out = []
    for path in directory.glob("*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda s: s.get("updated", ""), reverse=True)
