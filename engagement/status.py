"""``engagement status``: what an operator needs to see at a glance.

Broker health, consumer lag per partition (from the group's committed offsets against the log
end), what the loaders last reported (events/s, dead letters, last commit), the quarantine size
and the published runs.
"""

from __future__ import annotations

import json
from typing import Any

from engagement.settings import DEADLETTER_TOPIC, IDENTITY_TOPIC, Settings
from engagement.warehouse import published_dates, published_dir


def consumer_lag(settings: Settings) -> dict[str, dict[str, int | None]]:
    """Per partition of the loader's topics: end offset, committed offset and lag."""
    from kafka import KafkaAdminClient, KafkaConsumer

    topics = [*settings.event_topics, IDENTITY_TOPIC, DEADLETTER_TOPIC]
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000)
    try:
        committed = admin.list_consumer_group_offsets(settings.consumer_group)
        partitions = []
        for topic in topics:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                from kafka.structs import TopicPartition

                partitions.append(TopicPartition(topic, p))
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
    if broker_status.healthy:
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
        record = json.loads((published_dir(settings.warehouse) / f"{dates[-1].isoformat()}.json").read_text())
        status["last_publication"] = record
    return status


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
    elif "partitions_error" in status:
        lines.append(f"Partitions: unavailable ({status['partitions_error']})")
    loaders = status.get("loaders") or []
    if loaders:
        latest = loaders[0]
        lines.append(
            f"Loader (pid {latest.get('pid')}, updated {latest.get('updated')}): consumed {latest.get('consumed', 0):,}, "
            f"bronze {latest.get('bronze_rows', 0):,}, quarantined {latest.get('quarantined', 0):,}, "
            f"dead-lettered {latest.get('dead_lettered', 0):,}, {latest.get('events_per_second', 0):,.0f} events/s, "
            f"last commit {latest.get('last_commit') or 'never'}"
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
