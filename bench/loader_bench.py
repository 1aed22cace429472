"""Loader benchmark: throughput and resident memory on a backlog (not a test; `make bench`).

Starts its own single-node broker (temporary ENGAGEMENT_HOME, free ports), produces a backlog of
``--events`` engagement events to both platform topics (plus 1 % identity links and 0.1 %
invalid messages), then runs ``engagement load --until-idle`` as a subprocess and samples its
resident set size every 0.5 s. Reports the load's throughput, the peak RSS, and the RSS at
25/50/75/100 % of the backlog, which shows whether memory stays flat as the backlog drains.
Prints a table and writes JSON to ``bench/results/``.

    .venv/bin/python bench/loader_bench.py                  # 1,000,000 events
    .venv/bin/python bench/loader_bench.py --events 200000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import loader_log  # noqa: E402
from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, WECHAT_TOPIC  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.storage import LocalStore  # noqa: E402
from streaming import broker  # noqa: E402
from streaming.topics import create_topics  # noqa: E402

RESULTS = REPO / "bench" / "results"
SAMPLE_EVERY_S = 0.5
MARKS = (25, 50, 75, 100)


def _event(platform_name: str, i: int) -> bytes:
    kind = ("like", "share", "join")[i % 3]
    prefix = "ks" if platform_name == "kuaishou" else "wx"
    event = {
        "event_id": f"{prefix}-{i:09d}",
        "schema_version": 1,
        "event_type": kind,
        "platform": platform_name,
        "user_id": f"{prefix}-user-{i % 50_000}",
        "event_time": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:03.250+08:00",
        "content_id": f"content-{i % 9_000}" if kind != "join" else None,
        "group_id": f"group-{i % 700}" if kind != "share" or i % 2 else None,
        "channel": ("invite", "qr_code", "content", "live_stream")[i % 4] if kind == "join" else None,
        "inviter_user_id": f"{prefix}-user-{(i * 7) % 50_000}" if kind == "join" and i % 2 else None,
        "target_platform": ("kuaishou", "wechat")[i % 2] if kind == "share" else None,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def produce_backlog(bootstrap_servers: str, events: int) -> int:
    """Produce ``events`` events (half per platform), 1 % links and 0.1 % invalid; return the count."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=1024 * 1024,
    )
    sent = 0
    started = time.monotonic()
    try:
        for i in range(events):
            platform_name, topic = (("kuaishou", KUAISHOU_TOPIC), ("wechat", WECHAT_TOPIC))[i % 2]
            producer.send(topic, key=f"u{i % 50_000}".encode(), value=_event(platform_name, i))
            sent += 1
            if i % 100 == 0:
                link = {
                    "link_id": f"link-{i}",
                    "kuaishou_user_id": f"ks-user-{i % 50_000}",
                    "wechat_openid": f"openid-{i}",
                    "wechat_unionid": None,
                    "linked_at": "2026-03-01T08:00:00Z",
                }
                producer.send(IDENTITY_TOPIC, key=link["kuaishou_user_id"].encode(), value=json.dumps(link).encode())
                sent += 1
            if i % 1000 == 500:
                producer.send(topic, key=b"poison", value=b'{"event_id": "broken"')
                sent += 1
            if i and i % 200_000 == 0:
                print(f"  produced {sent:,} ({sent / (time.monotonic() - started):,.0f}/s)", file=sys.stderr, flush=True)
        producer.flush(timeout=300)
    finally:
        producer.close()
    return sent


def run_loader(settings: Settings, total: int, log_path: Path, *, workers: int = 1, warehouse: Path | None = None) -> dict:
    """Run the loader (``workers`` processes) until idle; sample RSS and progress every 0.5 s.

    ``warehouse``: load into this folder instead of the home's, as a group of its own (a second
    load of the same backlog)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_") or k == "ENGAGEMENT_KAFKA_LIBS"}
    env.update(
        ENGAGEMENT_HOME=str(settings.home),
        ENGAGEMENT_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        ENGAGEMENT_CONSUMER_GROUP="loader-bench" if warehouse is None else f"loader-bench-{warehouse.name}",
        PYTHONUNBUFFERED="1",
    )
    if warehouse is not None:
        env["ENGAGEMENT_WAREHOUSE_URI"] = str(warehouse)
    command = [sys.executable, "-m", "engagement.cli", "load", "--until-idle", "--idle-seconds", "2", "--workers", str(workers)]
    store = LocalStore(settings.warehouse if warehouse is None else warehouse)
    samples: list[tuple[float, int, int]] = []  # (seconds since start, marked offsets, rss bytes)
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        ps = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(_rss(child) for child in ps.children(recursive=True))
            except psutil.NoSuchProcess:
                break
            samples.append((time.monotonic() - started, loader_log.covered_offsets(store), rss))
            time.sleep(SAMPLE_EVERY_S)
        elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"loader exited with {process.returncode}; see {log_path}")
    done = loader_log.covered_offsets(store)
    if done != total:
        raise SystemExit(f"loader marked {done:,} of {total:,} offsets; see {log_path}")
    samples.append((elapsed, done, samples[-1][2] if samples else 0))

    # Throughput from the first to the last progress seen, without process start-up and the
    # final idle wait; and end to end, as an operator experiences it.
    moving = [s for s in samples if 0 < s[1]]
    first = next(s for s in samples if s[1] > 0)
    last = next(s for s in samples if s[1] >= total)
    steady = (last[1] - first[1]) / max(last[0] - first[0], 1e-6)
    at_marks = {}
    for mark in MARKS:
        threshold = total * mark / 100
        sample = next(s for s in samples if s[1] >= threshold)
        at_marks[mark] = {"seconds": round(sample[0], 1), "rss_mib": round(sample[2] / 2**20, 1)}
    return {
        "loader_seconds": round(elapsed, 1),
        "events_per_second_end_to_end": round(total / elapsed),
        "events_per_second_while_loading": round(steady),
        "peak_rss_mib": round(max(s[2] for s in samples) / 2**20, 1),
        "rss_at_progress": at_marks,
        "samples": len(moving),
    }


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:  # a worker that has just exited
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the backlog (default 1,000,000)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="loader processes (engagement load --workers; default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (broker data, bronze)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="engagement-bench-"))
    settings = broker.settings_on_free_ports(home, partitions=args.partitions, kafka_heap="1g")
    defaults = Settings()
    print(f"broker in {home} on {settings.bootstrap_servers} ...", file=sys.stderr, flush=True)
    broker.install(settings, quiet=True)
    broker.start(settings, timeout=180)
    try:
        create_topics(settings.bootstrap_servers, partitions=args.partitions)
        print(f"producing {args.events:,} events ...", file=sys.stderr, flush=True)
        produce_started = time.monotonic()
        total = produce_backlog(settings.bootstrap_servers, args.events)
        produce_seconds = time.monotonic() - produce_started
        print(f"loading {total:,} messages ...", file=sys.stderr, flush=True)
        result = run_loader(settings, total, home / "loader.log", workers=args.workers)
    finally:
        broker.stop(settings)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "events": args.events,
        "messages": total,
        "partitions_per_topic": args.partitions,
        "workers": args.workers,
        "batch": {
            "max_records": defaults.loader_batch_max_records,
            "max_bytes": defaults.loader_batch_max_bytes,
            "max_seconds": defaults.loader_batch_max_seconds,
        },
        "produce_seconds": round(produce_seconds, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        **result,
    }
    rows = [
        ("messages loaded", f"{total:,}"),
        ("loader wall time", f"{result['loader_seconds']:.1f} s (start-up and 2 s idle check included)"),
        ("throughput, end to end", f"{result['events_per_second_end_to_end']:,} events/s"),
        ("throughput, while loading", f"{result['events_per_second_while_loading']:,} events/s"),
        ("peak RSS", f"{result['peak_rss_mib']:.1f} MiB"),
    ]
    rows += [
        (f"RSS at {mark:>3} %", f"{m['rss_mib']:.1f} MiB (t={m['seconds']:.1f} s)") for mark, m in result["rss_at_progress"].items()
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"loader-{args.events}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    if args.keep:
        print(f"kept {home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
