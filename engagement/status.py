"""``engagement status``: what an operator needs to see at a glance.

Broker health, consumer lag per partition (from the group's committed offsets against the log
end), what the loaders last reported (events/s, dead letters, last commit), the quarantine size
and the published runs.
"""

from __future__ import annotations

import socket
from typing import Any

from core.contract import CONTRACT_TOPICS, DEADLETTER_TOPIC
from core.layout import QUARANTINE, published_dates
from core.loader_log import committed_files
from core.settings import Settings
from core.storage import warehouse_store
from core.tables import GOLD_TABLES
from engagement.publish import publication


def consumer_lag(settings: Settings) -> dict[str, dict[str, int | None]]:
    """Per partition of the loader's topics: end offset, committed offset and lag."""
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.errors import CoordinatorNotAvailableError
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
        try:
            committed = admin.list_group_offsets(settings.consumer_group).get(settings.consumer_group, {})
        except CoordinatorNotAvailableError:
            # No group has committed on this broker yet (its offsets topic does not exist): the
            # loader has not run here, so nothing is committed.
            committed = {}
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
    status["broker"] = {
        "running": broker_status.running,
        "healthy": broker_status.healthy,
        "message": broker_status.message,
    }
    # Also when the broker is not this home's own (docker-compose, a cluster): ask whoever
    # answers at ENGAGEMENT_BOOTSTRAP_SERVERS.
    status["broker"]["answers"] = broker_status.healthy or _answers(settings.bootstrap_servers)
    if status["broker"]["answers"]:
        try:
            status["partitions"] = consumer_lag(settings)
        except Exception as exc:  # show what we can; the broker section says why
            status["partitions_error"] = str(exc)
    status["loaders"] = read_loader_status(settings.home)[:5]
    store = warehouse_store(settings)
    status["quarantine_files"] = len(committed_files(store, QUARANTINE))
    dates = published_dates(store)
    status["published"] = [d.isoformat() for d in dates]
    if dates:
        record = publication(store, dates[-1])
        status["last_publication"] = {k: v for k, v in record.items() if k != "tables"}  # not every file name
    status["runs"] = _runs(settings)
    status["freshness"] = _freshness(settings, dates)
    status["problems"] = problems(settings, status)
    status["exit_code"] = min((code for code, _ in status["problems"]), default=OK)
    return status


# Exit codes of `engagement status` (README, "Operate"): 0 when nothing needs attention,
# otherwise the smallest code of the problems found.
OK = 0
NO_BROKER = 3
LAG_TOO_HIGH = 4
NOTHING_PUBLISHED = 5
LAST_RUN_FAILED = 6
GOLD_STALE = 7


def _runs(settings: Settings) -> dict[str, Any]:
    from engagement.runs import SUCCESS, list_runs

    records = list_runs(warehouse_store(settings))
    succeeded = [r for r in records if r["status"] == SUCCESS]
    return {
        "count": len(records),
        "last": records[-1] if records else None,
        "last_success": succeeded[-1] if succeeded else None,
    }


def _freshness(settings: Settings, dates: list) -> dict[str, Any]:
    """Per gold table: the latest published date and how many days it trails the last complete day."""
    from datetime import datetime, timezone

    from engagement.schedule import last_complete_day

    expected = last_complete_day(
        datetime.now(timezone.utc), timezone=settings.timezone, allowance_minutes=settings.late_allowance_minutes
    )
    latest = dates[-1] if dates else None
    return {
        "last_complete_day": expected.isoformat(),
        "tables": {
            table: {
                "as_of_date": latest.isoformat() if latest else None,
                "days_behind": (expected - latest).days if latest else None,
            }
            for table in GOLD_TABLES
        },
    }


def problems(settings: Settings, status: dict[str, Any]) -> list[tuple[int, str]]:
    """What needs attention, as (exit code, one line saying what to do)."""
    found: list[tuple[int, str]] = []
    if not status["broker"]["answers"]:
        found.append(
            (
                NO_BROKER,
                f"no Kafka broker answers at {settings.bootstrap_servers}: start it (`engagement kafka start`) or check ENGAGEMENT_BOOTSTRAP_SERVERS",
            )
        )
    lag = sum(p["lag"] or 0 for p in (status.get("partitions") or {}).values())
    if lag > settings.status_max_lag:
        found.append(
            (
                LAG_TOO_HIGH,
                f"consumer lag {lag:,} is above ENGAGEMENT_STATUS_MAX_LAG={settings.status_max_lag:,}: is the loader running (`engagement load`)?",
            )
        )
    if not status["published"]:
        found.append(
            (NOTHING_PUBLISHED, "nothing is published yet: run `engagement run --as-of YYYY-MM-DD` or let the DAG run")
        )
    last = status["runs"]["last"]
    if last is not None and last["status"] == "failed":
        found.append(
            (
                LAST_RUN_FAILED,
                f"the last run ({last['run_id']}, as of {last['as_of_date']}) failed in {last['failed_step']}: {last['error']}",
            )
        )
    behind = status["freshness"]["tables"][GOLD_TABLES[0]]["days_behind"]
    if behind is not None and behind > settings.status_max_stale_days:
        found.append(
            (
                GOLD_STALE,
                f"gold is {behind} days behind the last complete day {status['freshness']['last_complete_day']} (ENGAGEMENT_STATUS_MAX_STALE_DAYS={settings.status_max_stale_days}): is the DAG scheduled and succeeding?",
            )
        )
    return found


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
        lines.append(
            f"Published runs: {len(published)} ({published[0]} .. {published[-1]}); last at {last['published_at']}"
        )
        if counts:
            lines.append(f"  rows: {counts}")
    else:
        lines.append("Published runs: none yet (engagement run --as-of DATE)")
    runs = status["runs"]
    for label, run in (("Last run", runs["last"]), ("Last successful run", runs["last_success"])):
        if run is None:
            lines.append(f"{label}: none")
            continue
        lines.append(
            f"{label}: {run['run_id']} as of {run['as_of_date']} ({run['triggered_by']}), {run['status']}"
            f", {run['started_at']} .. {run.get('ended_at') or 'now'}"
            + (f", failed in {run['failed_step']}: {run['error']}" if run["status"] == "failed" else "")
        )
    if runs["last"] is not None and runs["last"]["gate_results"]:
        gates = ", ".join(
            f"{layer} {'passed' if g['passed'] else 'FAILED'} ({g['critical_failures']} critical, {g['warnings']} warnings)"
            for layer, g in runs["last"]["gate_results"].items()
        )
        lines.append(f"Gates of the last run: {gates}")
        docs = [g["data_docs"] for g in runs["last"]["gate_results"].values() if g.get("data_docs")]
        if docs:
            lines.append(f"Data Docs of its gates: {docs[-1]}")
    fresh = status["freshness"]
    first = fresh["tables"][GOLD_TABLES[0]]
    if first["as_of_date"]:
        lines.append(
            f"Freshness: every gold table as of {first['as_of_date']}, {first['days_behind']} day(s) behind "
            f"the last complete day {fresh['last_complete_day']}"
        )
    for code, text in status["problems"]:
        lines.append(f"ATTENTION ({code}): {text}")
    if not status["problems"]:
        lines.append("OK: nothing needs attention")
    return "\n".join(lines)
