"""``make demo``: the whole product on one machine, end to end, re-runnable.

Start the local Kafka, create the topics, generate ~a month of traffic for both platforms into
Kafka (once per generator configuration: a re-run does not produce it again), load it into
bronze, run the ``engagement_daily`` DAG for the last generated date, and print the headline
numbers next to the rates the generator was given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from datetime import date, timedelta

from core.settings import Settings
from core.storage import warehouse_store

DEMO_START = date(2026, 10, 1)


def _say(text: str) -> None:
    print(text, flush=True)


def _expected_for_report(rates: dict) -> dict:
    """The generator's truth keyed the way ``engagement.report.headline`` looks it up."""
    out = {}
    for platform, funnels in rates.get("join_conversion", {}).items():
        for funnel, rate in funnels.items():
            out[("conversion", platform, funnel)] = rate
    for platform, days in rates.get("retention", {}).items():
        for day, rate in days.items():
            out[("retention", platform, day)] = rate
    return out


def run_demo(settings: Settings, *, days: int = 35, seed: int = 7, users: int = 0, use_airflow: bool = True) -> int:
    from engagement.pipeline import STEP_NAMES
    from engagement.progress import Progress, by_day, pipeline_progress
    from engagement.report import headline, render_headline
    from streaming import broker
    from streaming.generator import GeneratorConfig, expected_rates, generate
    from streaming.loader import Loader
    from streaming.producer import produce
    from streaming.topics import create_contract_topics

    started = time.monotonic()
    # The bars below say what the loader's and the producer's INFO lines would (the log file
    # keeps their warnings).
    for chatty in ("engagement.loader", "streaming.producer"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    _say(f"== 1/5 Kafka (KRaft, single node) under {settings.kafka_dir}")
    broker.install(settings)
    _say("   " + broker.start(settings).message)
    for topic, outcome in create_contract_topics(settings).items():
        _say(f"   {topic}: {outcome}")

    overrides = {"start_date": DEMO_START, "days": days, "seed": seed, "timezone": settings.timezone}
    if users:
        overrides.update(kuaishou_users=users, wechat_users=users)
    # A little of everything the loader must cope with: redeliveries, invalid and late messages.
    overrides.update(duplicate_rate=0.01, invalid_rate=0.002, late_rate=0.01)
    config = GeneratorConfig(**overrides)
    fingerprint = hashlib.sha256(json.dumps(asdict(config), default=str, sort_keys=True).encode()).hexdigest()[:12]
    marker = settings.home / "demo" / f"produced-{fingerprint}.json"
    _say(f"== 2/5 Synthetic traffic: {days} days from {DEMO_START}, seed {seed}")
    if marker.exists():
        _say(f"   already produced ({marker.name}); not producing it again")
    else:
        progress = Progress("   generating and producing", every=3)
        count = produce(by_day(generate(config), config.days, progress), settings.bootstrap_servers, progress=progress)
        progress.fraction, progress.detail = 1.0, f"day {config.days}/{config.days}"
        progress(count, final=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"messages": count, "config": asdict(config)}, default=str, indent=2))
        _say(f"   produced {count:,} messages")

    _say("== 3/5 Loader: Kafka -> bronze / quarantine (until caught up)")
    produced = json.loads(marker.read_text())["messages"]
    loading = Progress("   loading", every=3, total=produced)
    stats = Loader(settings, until_idle=True, idle_seconds=3, progress=lambda s: loading(s.consumed)).run()
    loading(stats.consumed, final=True)
    _say(
        f"   consumed {stats.consumed:,}: bronze {stats.bronze_rows:,}, quarantine {stats.quarantined:,} "
        f"(dead-lettered {stats.dead_lettered:,})"
    )

    as_of = DEMO_START + timedelta(days=days - 1)
    if use_airflow:
        from engagement.airflow_local import run_dag

        _say(f"== 4/5 Airflow: engagement_daily for {as_of} (dag.test, SQLite metadata)")
        with pipeline_progress("   engagement_daily", STEP_NAMES):
            run_dag(settings, as_of)
    else:
        from engagement.pipeline import run_daily, spark_for

        _say(f"== 4/5 Pipeline for {as_of} (without a scheduler)")
        with pipeline_progress("   pipeline", STEP_NAMES):
            run_daily(spark_for(settings), settings, as_of)
    _say("   published")

    _say(f"== 5/5 Headline numbers as of {as_of} (measured vs. generator_rate)")
    conversion, retention = headline(warehouse_store(settings), as_of=as_of, expected=_expected_for_report(expected_rates(config)))
    _say(render_headline(conversion, retention))
    from engagement.report_page import write_report

    report = (settings.home / "report.html").resolve()
    write_report(warehouse_store(settings), report, as_of=as_of)
    _say(
        f"\nDone in {time.monotonic() - started:.0f} s. Where to look next:\n"
        f"  the report (charts, opens offline):  {report}\n"
        '  a query to try:                      .venv/bin/engagement query "SELECT * FROM join_conversion ORDER BY cohort_date DESC LIMIT 5"\n'
        "  what each table and column means:    .venv/bin/engagement tables join_conversion\n"
        "  pipeline health (exit code 0 = ok):  .venv/bin/engagement status\n"
        f"  the logs of this command:            {(settings.home / 'logs').resolve()}"
    )
    return 0
