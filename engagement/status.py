"""``engagement status``: what an operator needs to see at a glance.

Broker health, consumer lag per partition (from the group's committed offsets against the log
end), what the loaders last reported (events/s, dead letters, last commit), the quarantine size
and the published runs.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from core.contract import CONTRACT_TOPICS, DEADLETTER_TOPIC
from core.layout import publication_record, published_dates
from core.settings import Settings


def consumer_lag(settings: Settings) -> dict[str, dict[str, int | None]]:
    """Per partition of the loader's topics: end offset, committed offset and lag."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.structs import TopicPartition

    topics = list(CONTRACT_TOPICS)
    # Short timeouts: a status command answers in seconds or says what it could not reach.
    client = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "request_timeout_ms": 5000,
        "bootstrap_timeout_ms": 5000,
        "reconnect_backoff_max_ms": 1000,
    }
    admin = KafkaAdminClient(**client)
    try:
        consumer = KafkaConsumer(**client)
    except Exception:
        admin.close()
        raise
    try:
        # kafka-python 3: {group: {TopicPartition: OffsetAndMetadata}}
        committed = admin.list_group_offsets(settings.consumer_group).get(settings.consumer_group, {})
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close()
        admin.close()
    out: dict[str, dict[str, int | None]] = {}
    for tp in partitions:
        end = ends.get(tp)
        if tp.topic == DEADLETTER_TOPIC:
            out[f"{tp.topic}[{tp.partition}]"] = {"end": end, "committed": None, "lag": None}
            continue
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else None
        out[f"{tp.topic}[{tp.partition}]"] = {
            "end": end,
            "committed": done,
            "lag": None if end is None else end - (done or 0),
        }
    return out


def pipeline_status(settings: Settings) -> dict[str, Any]:
    from streaming import broker
    from streaming.loader import read_loader_status

    status: dict[str, Any] = {"settings": settings.describe()}
    broker_status = broker.status(settings)
    status["broker"] = {"running": broker_status.running, "healthy": broker_status.healthy, "message": broker_status.message}
    # Also when the broker is not this home's own (docker-compose, a cluster): ask whoever
    # answers at ENGAGEMENT_BOOTSTRAP_SERVERS.
    if broker_status.healthy or _answers(settings.bootstrap_servers):
        try:
            status["partitions"] = consumer_lag(settings)
        except Exception as exc:  # show what we can; the broker section says why
            status["partitions_error"] = str(exc)
    status["loaders"] = read_loader_status(settings.home)[:5]
    quarantine = settings.warehouse / "quarantine"
    status["quarantine_files"] = len(list(quarantine.rglob("*.parquet"))) if quarantine.is_dir() else 0
    dates = published_dates(settings.warehouse)
    status["published"] = [d.isoformat() for d in dates]
    if dates:
        record = json.loads(publication_record(settings.warehouse, dates[-1]).read_text())
        status["last_publication"] = record
    return status


def _answers(bootstrap_servers: str) -> bool:
    """Whether something accepts TCP connections at the first bootstrap server (fast check)."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1.0).close()
    except (OSError, ValueError):
        return False
    return True


def render_status(status: dict[str, Any]) -> str:
    lines = [f"Kafka: {status['broker']['message']}"]
    partitions = status.get("partitions")
    if partitions:
        lines.append("Partitions (end / committed / lag):")
        for name, p in partitions.items():
            committed = "-" if p["committed"] is None else f"{p['committed']:,}"
            lag = "-" if p["lag"] is None else f"{p['lag']:,}"
            lines.append(f"  {name:40s} {p['end'] or 0:>10,} {committed:>10} {lag:>10}")
        total = sum(p["lag"] or 0 for p in partitions.values())
        lines.append(f"  total lag: {total:,}")
        dead = sum(p["end"] or 0 for name, p in partitions.items() if name.startswith(DEADLETTER_TOPIC + "["))
        lines.append(f"  dead letters on {DEADLETTER_TOPIC}: {dead:,}")
    elif "partitions_error" in status:
        lines.append(f"Partitions: unavailable ({status['partitions_error']})")
    loaders = status.get("loaders") or []
    if loaders:
        # Every loader that is running, or the one that ran last.
        for loader in [s for s in loaders if s.get("running")] or loaders[:1]:
            state = "running" if loader.get("running") else "stopped"
            lines.append(
                f"Loader (pid {loader.get('pid')}, {state}, updated {loader.get('updated')}): "
                f"consumed {loader.get('consumed', 0):,}, bronze {loader.get('bronze_rows', 0):,}, "
                f"quarantined {loader.get('quarantined', 0):,}, dead-lettered {loader.get('dead_lettered', 0):,}, "
                f"{loader.get('events_per_second', 0):,.0f} events/s, last commit {loader.get('last_commit') or 'never'}"
            )
    else:
        lines.append("Loader: has not run under this ENGAGEMENT_HOME")
    lines.append(f"Quarantine files: {status['quarantine_files']}")
    published = status.get("published") or []
    if published:
        last = status["last_publication"]
        counts = ", ".join(f"{k}={v:,}" for k, v in (last.get("row_counts") or {}).items())
        lines.append(f"Published runs: {len(published)} ({published[0]} .. {published[-1]}); last at {last['published_at']}")
        if counts:
            lines.append(f"  rows: {counts}")
    else:
        lines.append("Published runs: none yet (engagement run --as-of DATE)")
    return "\n".join(lines)
