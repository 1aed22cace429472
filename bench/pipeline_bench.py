"""Pipeline benchmark: loader, full refresh, incremental daily run and DuckDB on one data set
(not a test; ``make bench``). Writes ``BENCHMARKS.md`` and JSON to ``bench/results/``.

For each size (events over 90 days, the generator's own behaviour; 1 % redeliveries, 2 % late
events, 0.1 % invalid messages):

1. generate the traffic (``streaming.generator``, fixed seed) and produce days 1-89 to a
   throw-away single-node broker (3 partitions per topic), keeping day 90's messages aside;
2. consume every message with a bare kafka-python loop (no parsing, no writing): the ceiling
   the loader is compared with; then run ``engagement load --until-idle`` on the same topics,
   sampling its resident memory; then again with two workers (``--workers 2``, one process a
   core) into a warehouse and consumer group of their own, which is removed afterwards;
3. ``engagement run --as-of <day 89> --full-refresh``: the history;
4. produce and load day 90, then ``engagement run --as-of <day 90>``: one incremental daily run
   after 89 days of history;
5. ``engagement run --as-of <day 90> --full-refresh`` on the same bronze: the full refresh the
   incremental run is compared with (and its rows must be the same: checked);
6. ``bench/duckdb_gold.py`` over the same committed bronze, as of day 90.

Each run's time is the whole ``engagement run`` process (Spark start-up included); stage times
come from its ``pipeline_runs`` record and gold table times from its publication; the Spark
driver's peak resident memory is sampled every 0.5 s (the JVM's, and the Python driver's), and
so is the CPU time of each of the driver JVM's threads (Linux's ``/proc``), summed by kind: its
just-in-time compilers, Spark's tasks, the garbage collector, the rest.

    .venv/bin/python bench/pipeline_bench.py                        # 1M and 10M events
    .venv/bin/python bench/pipeline_bench.py --sizes 200000         # a quick run
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
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from loader_bench import run_loader  # noqa: E402

from core import loader_log  # noqa: E402
from core.contract import IDENTITY_TOPIC, KUAISHOU_TOPIC, WECHAT_TOPIC  # noqa: E402
from core.java import java_executable  # noqa: E402
from core.layout import BRONZE_EVENTS, BRONZE_IDENTITY  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.storage import LocalStore  # noqa: E402
from core.tables import GOLD_TABLES  # noqa: E402
from streaming import broker  # noqa: E402
from streaming.topics import create_topics  # noqa: E402

RESULTS = REPO / "bench" / "results"
START = date(2026, 6, 1)
DAYS = 90
LAST = START + timedelta(days=DAYS - 1)
# The generator's defaults make about 472k events over 90 days; users and groups scale it.
EVENTS_AT_DEFAULTS = 472_000
SAMPLE_EVERY_S = 0.5
# The second loader run: one worker per core of this 2-core machine (engagement load --workers).
LOADER_WORKERS = 2


def _say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def generator_config(events: int):
    from streaming.generator import GeneratorConfig

    scale = events / EVENTS_AT_DEFAULTS
    defaults = GeneratorConfig(start_date=START)
    return GeneratorConfig(
        start_date=START, days=DAYS, seed=90,
        kuaishou_users=max(1, round(defaults.kuaishou_users * scale)),
        wechat_users=max(1, round(defaults.wechat_users * scale)),
        kuaishou_groups=max(1, round(defaults.kuaishou_groups * scale)),
        wechat_groups=max(1, round(defaults.wechat_groups * scale)),
        duplicate_rate=0.01, late_rate=0.02, invalid_rate=0.001,
    )  # fmt: skip


def produce(settings: Settings, messages: Iterable) -> dict[str, int]:
    """Produce ``messages`` in their order; count per topic."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=50, batch_size=1024 * 1024, max_request_size=1024 * 1024
    )
    counts: dict[str, int] = {}
    started = time.monotonic()
    try:
        for m in messages:
            producer.send(m.topic, key=m.key, value=m.value)
            counts[m.topic] = counts.get(m.topic, 0) + 1
            total = sum(counts.values())
            if total % 500_000 == 0:
                _say(f"  produced {total:,} ({total / (time.monotonic() - started):,.0f}/s)")
        producer.flush(timeout=600)
    finally:
        producer.close()
    return counts


def until_last_day(config, rest: list) -> Iterator:
    """The generated messages emitted before the last day; those on and after it go to ``rest``
    (in order), so that the last day is produced later without generating everything again."""
    from streaming.generator import generate

    for m in generate(config):
        if m.emit_date >= LAST:
            rest.append(m)
        else:
            yield m


def bare_consume(settings: Settings, total: int) -> dict[str, float]:
    """Read ``total`` messages from the three input topics with a plain kafka-python loop."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        KUAISHOU_TOPIC, WECHAT_TOPIC, IDENTITY_TOPIC,
        bootstrap_servers=settings.bootstrap_servers, group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024,
    )  # fmt: skip
    seen, started = 0, time.monotonic()
    try:
        while seen < total:
            for records in consumer.poll(timeout_ms=1000).values():
                seen += len(records)
            if time.monotonic() - started > 3600:
                raise SystemExit(f"bare consumer saw {seen:,} of {total:,} messages in an hour")
    finally:
        consumer.close()
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "events_per_second": round(total / seconds)}


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_") or k in ("ENGAGEMENT_KAFKA_LIBS",)}
    env.update(
        ENGAGEMENT_HOME=str(settings.home),
        ENGAGEMENT_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        ENGAGEMENT_SPARK_DRIVER_MEMORY=settings.spark_driver_memory,
        ENGAGEMENT_SPARK_SHUFFLE_PARTITIONS=str(settings.spark_shuffle_partitions),
        PYTHONUNBUFFERED="1",
    )
    return env


# What the driver JVM's threads spend its CPU on, by the names the JVM gives them (Linux shows
# the first 15 characters): its just-in-time compilers, Spark's task threads, the garbage
# collector; anything else (Spark's scheduler, shuffle and RPC threads, the VM's own) is "other".
CPU_KINDS = {
    "jit": ("C1 CompilerThre", "C2 CompilerThre"),
    "tasks": ("Executor task",),
    "gc": ("GC Thread", "G1 "),
}
# The kinds in the order the results and BENCHMARKS.md give them.
CPU_COLUMNS = (*CPU_KINDS, "other")


def cpu_kind(thread_name: str) -> str:
    """The :data:`CPU_KINDS` key a JVM thread's name belongs to, or ``"other"``."""
    return next((kind for kind, prefixes in CPU_KINDS.items() if thread_name.startswith(prefixes)), "other")


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread of process ``pid``, with its name, from
    ``/proc`` (empty where there is none)."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().rstrip("\n")
            # Fields after the name (which may hold blanks) start at the state; utime and stime
            # are the 14th and 15th of the whole line.
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while it was read
    return threads


def timed_run(settings: Settings, as_of: date, log_path: Path, *, full_refresh: bool) -> dict:
    """``engagement run`` as a process: wall time, peak RSS of the driver (JVM, Python), the CPU
    seconds of the driver JVM's threads by kind (:data:`CPU_KINDS`; sampled, so a thread's last
    half second before it ends is not counted), stages."""
    from engagement.publish import publication
    from engagement.runs import list_runs

    command = [sys.executable, "-m", "engagement.cli", "run", "--as-of", as_of.isoformat()]
    command += ["--full-refresh"] if full_refresh else []
    peak = {"jvm": 0, "python": 0}
    # (pid, thread id) -> (name, CPU seconds): a pooled thread's name changes from task to task.
    jvm_threads: dict[tuple[int, int], tuple[str, float]] = {}
    with open(log_path, "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                peak["python"] = max(peak["python"], parent.memory_info().rss)
                for child in parent.children(recursive=True):
                    if "java" in child.name():
                        peak["jvm"] = max(peak["jvm"], child.memory_info().rss)
                        for tid, named in thread_cpu_seconds(child.pid).items():
                            jvm_threads[(child.pid, tid)] = named
            except psutil.NoSuchProcess:
                pass
            time.sleep(SAMPLE_EVERY_S)
        seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"engagement run exited {process.returncode}; see {log_path}")
    store = LocalStore(settings.warehouse)
    record = [r for r in list_runs(store) if r["as_of_date"] == as_of.isoformat()][-1]
    published = publication(store, as_of)
    return {
        "seconds": round(seconds, 1),
        "mode": published.get("mode"),
        "step_seconds": record.get("step_seconds", {}),
        "table_seconds": published.get("table_seconds", {}),
        "row_counts": record["row_counts"],
        "driver_jvm_peak_rss_mib": round(peak["jvm"] / 2**20),
        "driver_python_peak_rss_mib": round(peak["python"] / 2**20),
        "driver_jvm_cpu_seconds": {
            kind: round(sum(cpu for name, cpu in jvm_threads.values() if cpu_kind(name) == kind), 1)
            for kind in CPU_COLUMNS
        },
    }


def gold_snapshot(settings: Settings, as_of: date) -> dict[str, list]:
    import duckdb

    from engagement.publish import read_published

    out = {}
    for table in GOLD_TABLES:
        rows = read_published(LocalStore(settings.warehouse), table, as_of)  # noqa: F841 - read by DuckDB
        out[table] = duckdb.sql("SELECT * FROM rows ORDER BY ALL").fetchall()
    return out


def duckdb_time(settings: Settings, as_of: date) -> dict:
    from duckdb_gold import gold_tables

    store = LocalStore(settings.warehouse)
    events = [str(store.path(k)) for k in loader_log.committed_files(store, BRONZE_EVENTS)]
    links = [str(store.path(k)) for k in loader_log.committed_files(store, BRONZE_IDENTITY)]
    started = time.monotonic()
    tables = gold_tables(events, links, as_of=as_of, timezone=settings.timezone)
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "rows": {name: t.num_rows for name, t in tables.items()}}


def bench_size(events: int, *, keep: bool) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"engagement-bench-{events}-"))
    settings = broker.settings_on_free_ports(home, partitions=3, kafka_heap="1g")
    from dataclasses import replace

    settings = replace(settings, spark_driver_memory="6g", spark_shuffle_partitions=4)
    config = generator_config(events)
    result: dict = {"events_requested": events, "home": str(home)}
    broker.install(settings, quiet=True)
    broker.start(settings, timeout=180)
    try:
        create_topics(settings.bootstrap_servers, partitions=3)
        _say(f"{events:,}: generating and producing days 1-{DAYS - 1} ...")
        started = time.monotonic()
        last_day_messages: list = []
        history = produce(settings, until_last_day(config, last_day_messages))
        result["produce_seconds"] = round(time.monotonic() - started, 1)
        history_total = sum(history.values())
        result["history_messages"] = history_total
        _say(f"{events:,}: bare consume loop over {history_total:,} messages ...")
        result["bare_consume"] = bare_consume(settings, history_total)
        _say(f"{events:,}: loader ...")
        result["loader"] = run_loader(settings, history_total, home / "loader.log")
        _say(f"{events:,}: loader with {LOADER_WORKERS} workers (the same backlog again, into a warehouse of its own) ...")
        result["loader_workers"] = run_loader(
            settings, history_total, home / "loader-workers.log", workers=LOADER_WORKERS, warehouse=home / "warehouse-workers"
        )
        shutil.rmtree(home / "warehouse-workers")
        _say(f"{events:,}: full refresh as of {LAST - timedelta(days=1)} ...")
        result["full_refresh_history"] = timed_run(settings, LAST - timedelta(days=1), home / "run.log", full_refresh=True)

        _say(f"{events:,}: day {DAYS}: produce and load ...")
        last_day = produce(settings, last_day_messages)
        result["last_day_messages"] = sum(last_day.values())
        result["loader_last_day"] = run_loader(settings, history_total + sum(last_day.values()), home / "loader.log")
        _say(f"{events:,}: incremental run as of {LAST} ...")
        result["incremental"] = timed_run(settings, LAST, home / "run.log", full_refresh=False)
        incremental_rows = gold_snapshot(settings, LAST)
        _say(f"{events:,}: full refresh as of {LAST} ...")
        result["full_refresh"] = timed_run(settings, LAST, home / "run.log", full_refresh=True)
        result["same_rows"] = gold_snapshot(settings, LAST) == incremental_rows
        result["silver_events"] = result["full_refresh"]["row_counts"].get("events")
        _say(f"{events:,}: DuckDB ...")
        result["duckdb"] = duckdb_time(settings, LAST)
    except BaseException as exc:  # keep what was measured; the table shows the rest as missing
        result["error"] = f"{type(exc).__name__}: {exc}"
        _say(f"{events:,}: stopped: {result['error']}")
    finally:
        broker.stop(settings)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    return result


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {name: version(name) for name in ("pyspark", "kafka-python", "duckdb", "great-expectations", "apache-airflow")}
    # The JDK Spark's launcher and the broker run: JAVA_HOME's, else the first on PATH.
    java = subprocess.run([java_executable() or "java", "-version"], capture_output=True, text=True)
    out["java"] = (java.stderr or java.stdout).splitlines()[0] if java.returncode == 0 else "?"
    out["python"] = platform.python_version()
    return out


def _machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def code_measured() -> str:
    """The code this checkout holds: ``git describe --always --dirty``, with a digest of the
    uncommitted changes when there are any (the runs import this working tree: an edit during
    the bench changes what it measures)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    described = git("describe", "--always", "--dirty").strip()
    if not described:
        return "not a git checkout"
    if described.endswith("-dirty"):
        import hashlib

        described += f" (uncommitted changes {hashlib.sha256(git('diff', 'HEAD').encode()).hexdigest()[:8]})"
    return described


def render(results: list[dict], versions: dict[str, str], code: str = "") -> str:
    """BENCHMARKS.md from the results of one ``make bench`` run."""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({Path(__file__).relative_to(REPO)}) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC,",
        f"all figures from that one run. Machine: {_machine()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Code: {code or 'not recorded'}.",
        "",
        f"Data: generated traffic over {DAYS} days (seed 90, the generator's rates, 1 % redeliveries,",
        "2 % late events, 0.1 % invalid), 3 partitions per topic. Days 1-89 are loaded and computed",
        f"with a full refresh; then day {DAYS} arrives and one incremental daily run computes it; then a",
        f"full refresh as of day {DAYS} over the same bronze (its rows are compared with the incremental",
        "run's). Times are whole processes (`engagement run`: Spark start-up and the three quality",
        "gates included). Spark: local mode, 4 shuffle partitions, 6 GiB driver.",
        "",
    ]
    header = ["", *[f"{r['events_requested']:,} events" for r in results]]
    rows: list[list[str]] = []

    def row(name, fn):
        def cell(r):
            try:
                return fn(r)
            except (KeyError, TypeError, ZeroDivisionError):
                return "—"

        rows.append([name, *[cell(r) for r in results]])

    row("messages, days 1-89 / day 90", lambda r: f"{r['history_messages']:,} / {r['last_day_messages']:,}")
    row("silver events (deduplicated)", lambda r: f"{r['silver_events']:,}")
    row("bare kafka-python consume loop", lambda r: f"{r['bare_consume']['events_per_second']:,} msg/s")
    row("loader (end to end)", lambda r: f"{r['loader']['events_per_second_end_to_end']:,} msg/s")
    row("loader / bare loop", lambda r: f"{r['loader']['events_per_second_end_to_end'] / r['bare_consume']['events_per_second']:.0%}")
    row("loader peak RSS", lambda r: f"{r['loader']['peak_rss_mib']:.0f} MiB")
    row(
        "loader RSS at 25/50/75/100 %",
        lambda r: " / ".join(f"{m['rss_mib']:.0f}" for m in r["loader"]["rss_at_progress"].values()) + " MiB",
    )
    row(f"loader, {LOADER_WORKERS} workers (end to end)", lambda r: f"{r['loader_workers']['events_per_second_end_to_end']:,} msg/s")
    row(
        # Two consumers against the one of the bare loop: how far a second core takes the loader.
        f"loader, {LOADER_WORKERS} workers / bare loop (one consumer)",
        lambda r: f"{r['loader_workers']['events_per_second_end_to_end'] / r['bare_consume']['events_per_second']:.0%}",
    )
    row(f"loader, {LOADER_WORKERS} workers: peak RSS of all", lambda r: f"{r['loader_workers']['peak_rss_mib']:.0f} MiB")
    row("full refresh, days 1-89", lambda r: f"{r['full_refresh_history']['seconds']:.0f} s")
    row("full refresh, days 1-90", lambda r: f"{r['full_refresh']['seconds']:.0f} s")
    row("incremental run, day 90", lambda r: f"{r['incremental']['seconds']:.0f} s")
    row("incremental / full refresh", lambda r: f"{r['incremental']['seconds'] / r['full_refresh']['seconds']:.0%}")
    row("same rows (incremental = full)", lambda r: "yes" if r["same_rows"] else "**NO**")
    row("DuckDB, same definitions", lambda r: f"{r['duckdb']['seconds']:.1f} s")
    row("full refresh / DuckDB", lambda r: f"{r['full_refresh']['seconds'] / r['duckdb']['seconds']:.1f}x")
    for run in ("full_refresh", "incremental"):
        label = "full" if run == "full_refresh" else "incr."
        row(f"driver peak RSS ({label}): JVM / Python", lambda r, run=run: f"{r[run]['driver_jvm_peak_rss_mib']:,} / {r[run]['driver_python_peak_rss_mib']:,} MiB")
        row(
            # On 2 cores the JIT compilers' share is time the tasks do not get.
            f"driver JVM CPU ({label}): JIT compilers / Spark tasks / GC / other",
            lambda r, run=run: " / ".join(f"{r[run]['driver_jvm_cpu_seconds'][k]:.0f}" for k in CPU_COLUMNS) + " s",
        )
    for step in ("validate_bronze", "build_silver", "validate_silver", "build_gold", "validate_gold", "publish"):
        row(f"step {step} (full / incr.)", lambda r, s=step: f"{r['full_refresh']['step_seconds'].get(s, 0):.1f} / {r['incremental']['step_seconds'].get(s, 0):.1f} s")
    for table in GOLD_TABLES:
        row(f"gold {table} (full / incr.)", lambda r, t=table: f"{r['full_refresh']['table_seconds'].get(t, 0):.1f} / {r['incremental']['table_seconds'].get(t, 0):.1f} s")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [f"\n{r['events_requested']:,} events: **stopped early**: {r['error']}" for r in results if r.get("error")]
    lines += ["", "Raw figures: `bench/results/pipeline-*.json` of the same run.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated event counts (default 1M and 10M)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes (broker data, warehouse)")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    code = code_measured()
    results = []
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        results.append({**bench_size(size, keep=args.keep), "code": code})
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"pipeline-{size}-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(results[-1], indent=2, default=str) + "\n")
        _say(f"wrote {out.relative_to(REPO)}")
    ended = code_measured()
    if ended != code:
        code += f", then {ended} before the bench ended: its figures may measure either"
        _say(f"the code changed during the bench: {code}")
    Path(args.output).write_text(render(results, _versions(), code))
    _say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
