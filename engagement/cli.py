"""``engagement``: the one command-line program for every job a person runs by hand.

This module parses arguments and dispatches to the functions the DAG and the tests call too;
an error the user can fix (:class:`core.errors.UserError`) is printed on one line, without a
traceback unless ``--verbose``.

    engagement kafka install|start|stop|status     the local single-node broker (KRaft)
    engagement topics create [--partitions N]      the four topics of the event contract
    engagement generate [--to-kafka|--output F]    synthetic traffic for both platforms
    engagement load [--until-idle]                 the loader: Kafka -> bronze / quarantine
    engagement run --as-of D | --from D --to D     the daily pipeline without a scheduler
    engagement validate LAYER --as-of D            a quality gate on its own
    engagement query "SQL"                         SQL over the published gold tables
    engagement status                              broker, lag, loader, published runs
    engagement report [--as-of D]                  the headline numbers
    engagement prune [--keep-days N]               remove publications and gold builds past retention
    engagement s3 serve [--dir D]                  an S3-compatible server (SeaweedFS) for the warehouse
    engagement demo                                everything above, end to end
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from datetime import date, timedelta
from pathlib import Path

from core.errors import UserError
from core.settings import Settings, get_settings
from core.storage import warehouse_store

log = logging.getLogger("engagement")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-03-01") from None


def _say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# kafka / topics
# --------------------------------------------------------------------------------------------
def cmd_kafka(settings: Settings, args: argparse.Namespace) -> int:
    from streaming import broker

    if args.action == "install":
        libs = broker.install(settings, quiet=args.quiet)
        if not args.quiet:
            _say(f"Kafka jars ready in {libs}")
        return 0
    if args.action == "start":
        broker.install(settings)  # says so when it has to fetch the jars (~45 MB, once)
        status = broker.start(settings)
        _say(status.message)
        return 0
    if args.action == "stop":
        stopped = broker.stop(settings)
        _say("Kafka stopped" if stopped else "Kafka was not running")
        return 0
    status = broker.status(settings)
    _say(status.message)
    return 0 if status.running else 3


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streaming.topics import create_contract_topics

    if args.partitions:
        settings = replace(settings, topic_partitions=args.partitions)
    for topic, outcome in create_contract_topics(settings).items():
        _say(f"{topic}: {outcome}")
    return 0


# --------------------------------------------------------------------------------------------
# generate / load
# --------------------------------------------------------------------------------------------
def _generator_config(args: argparse.Namespace, settings: Settings):
    from streaming.generator import GeneratorConfig

    overrides = {
        "start_date": args.start_date,
        "days": args.days,
        "seed": args.seed,
        "timezone": settings.timezone,
        "duplicate_rate": args.duplicates,
        "invalid_rate": args.invalid,
        "late_rate": args.late,
    }
    if args.users:
        overrides["kuaishou_users"] = args.users
        overrides["wechat_users"] = args.users
    return GeneratorConfig(**overrides)  # GeneratorConfigError names a setting out of range


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.generator import generate, write_jsonl

    config = _generator_config(args, settings)
    messages = generate(config)
    if args.until:
        messages = (m for m in messages if m.emit_date <= args.until)
    if args.output:
        count = write_jsonl(messages, Path(args.output))
        _say(f"wrote {count:,} messages to {args.output}")
        return 0
    from engagement.progress import Progress, by_day
    from streaming.producer import produce

    progress = Progress("generating and producing")
    count = produce(by_day(messages, config.days, progress), settings.bootstrap_servers, progress=progress)
    progress.fraction = 1.0
    progress(count, final=True)
    _say(f"produced {count:,} messages to {settings.bootstrap_servers}")
    return 0


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.loader import Loader, run_workers

    workers = settings.loader_workers if args.workers is None else args.workers
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        stats = run_workers(settings, workers, until_idle=args.until_idle, idle_seconds=args.idle_seconds)
    else:
        loader = Loader(settings, until_idle=args.until_idle, idle_seconds=args.idle_seconds)
        loader.install_signal_handlers()
        stats = loader.run()
    _say(
        f"loaded {stats.consumed:,} messages{f' with {workers} workers' if workers > 1 else ''}: {stats.bronze_rows:,} to bronze, "
        f"{stats.quarantined:,} to quarantine ({stats.dead_lettered:,} dead-lettered)"
    )
    return 0


# --------------------------------------------------------------------------------------------
# run / validate
# --------------------------------------------------------------------------------------------
def _dates(args: argparse.Namespace) -> list[date]:
    if args.as_of:
        return [args.as_of]
    if not (args.start and args.end):
        raise UserError("give --as-of DATE, or --from DATE and --to DATE")
    if args.end < args.start:
        raise UserError(f"--to {args.end} is before --from {args.start}")
    return [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.pipeline import STEP_NAMES, run_daily, spark_for
    from engagement.progress import pipeline_progress

    dates = _dates(args)
    spark = spark_for(settings)
    for i, as_of in enumerate(dates, 1):
        started = time.monotonic()
        with pipeline_progress(f"[{i}/{len(dates)}] {as_of}", STEP_NAMES):
            result = run_daily(spark, settings, as_of, full_refresh=args.full_refresh and i == 1)
        counts = ", ".join(f"{k}={v:,}" for k, v in result.gold_counts.items())
        _say(f"{as_of}: published in {time.monotonic() - started:.0f} s ({counts})")
    return 0


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.pipeline import GATES, spark_for
    from expectations.runner import QualityGateFailed

    try:
        report = GATES[args.layer](spark_for(settings), settings, args.as_of)
    except QualityGateFailed as exc:
        if args.format != "json":
            raise
        report = exc.report
    _say(json.dumps(report.to_dict(), indent=2) if args.format == "json" else report.summary())
    return 0 if report.passed else 1


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    described = settings.describe()
    _say(json.dumps(described, indent=2) if args.format == "json" else "\n".join(f"{k}={v}" for k, v in described.items()))
    return 0


# --------------------------------------------------------------------------------------------
# query / status / report
# --------------------------------------------------------------------------------------------
def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.query import format_result, run_query

    sql = args.sql if args.sql != "-" else sys.stdin.read()
    _say(format_result(run_query(warehouse_store(settings), sql, as_of=args.as_of), args.format))
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.status import pipeline_status, render_status

    status = pipeline_status(settings)
    _say(json.dumps(status, indent=2, default=str) if args.format == "json" else render_status(status))
    return status["exit_code"]


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.report import headline, render_headline

    if args.format == "html" or (args.output and args.output.endswith((".html", ".htm"))):
        from engagement.report_page import write_report

        output = Path(args.output or "report.html")
        shown, charts = write_report(warehouse_store(settings), output, as_of=args.as_of)
        _say(f"wrote {output} ({len(charts)} charts, gold as published for {shown}); open it in a browser")
        return 0
    conversion, retention = headline(warehouse_store(settings), as_of=args.as_of)
    text = render_headline(conversion, retention, args.format)
    if args.output:
        Path(args.output).write_text(text + "\n")
        _say(f"wrote {args.output}")
    else:
        _say(text)
    return 0


def cmd_tables(settings: Settings, args: argparse.Namespace) -> int:
    from engagement import dictionary

    if args.format == "markdown":
        if args.table:
            raise UserError("--format markdown writes the whole dictionary (docs/tables.md); leave out the table")
        sys.stdout.write(dictionary.render_markdown())
        return 0
    selected = dictionary.find(args.table) if args.table else dictionary.all_tables()
    if args.format == "json":
        _say(json.dumps([dictionary.describe(t) for t in selected], indent=2))
    else:
        _say(dictionary.render_text(selected) if args.table else dictionary.render_summary())
    return 0


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.publish import prune

    keep = settings.snapshot_retention_days if args.keep_days is None else args.keep_days
    removed = prune(warehouse_store(settings), keep_days=keep)
    _say(
        f"removed {removed['publications']} publication(s) older than {keep} days, {removed['builds']} unused gold "
        f"build(s) and the silver of {removed['silver']} published date(s)"
    )
    return 0


def cmd_s3(settings: Settings, args: argparse.Namespace) -> int:
    import os
    from urllib.parse import urlparse

    from engagement.objectstore import ObjectStoreError, ObjectStoreServer

    keys = [os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if not all(keys):
        raise ObjectStoreError("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the server accepts that key pair only")
    bucket = urlparse(settings.warehouse_uri).netloc if settings.warehouse_on_object_storage else None
    directory = Path(args.dir) if args.dir else settings.home / "s3"
    directory.mkdir(parents=True, exist_ok=True)
    return ObjectStoreServer(directory, *keys).serve(host=args.host, bucket=bucket)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from engagement.demo import run_demo

    return run_demo(settings, days=args.days, seed=args.seed, users=args.users, use_airflow=not args.no_airflow)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
def _add_generator_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-date", type=_date, default=date(2026, 10, 1), help="first simulated local date")
    p.add_argument("--days", type=int, default=35, help="simulated days (default 35)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--users", type=int, default=0, help="users per platform (default: generator's)")
    p.add_argument("--duplicates", type=float, default=0.0, help="share of redelivered messages")
    p.add_argument("--invalid", type=float, default=0.0, help="share of invalid messages")
    p.add_argument("--late", type=float, default=0.0, help="share of events that arrive 1-3 days late")


# Shown under each command's --help (commands with their own epilog add these to it).
EXAMPLES = {
    "kafka": ["engagement kafka start", "engagement kafka status", "ENGAGEMENT_KAFKA_NODES=3 engagement kafka start"],
    "topics": ["engagement topics create", "engagement topics create --partitions 6"],
    "generate": ["engagement generate --days 35 --seed 7", "engagement generate --days 3 --output sample.jsonl",
                 "engagement generate --late 0.02 --duplicates 0.01 --invalid 0.002"],
    "load": ["engagement load                      run until SIGTERM (Ctrl-C), committing as it goes",
             "engagement load --until-idle         stop once caught up",
             "engagement load --workers 2          two loader processes (a backlog on two cores)"],
    "run": ["engagement run --as-of 2026-11-04", "engagement run --from 2026-11-01 --to 2026-11-04",
            "engagement run --as-of 2026-11-04 --full-refresh"],
    "validate": ["engagement validate gold --as-of 2026-11-04", "engagement validate bronze --as-of 2026-11-04 --format json"],
    "query": ['engagement query "SELECT * FROM join_conversion ORDER BY cohort_date DESC LIMIT 5"',
              'engagement query "SELECT * FROM pipeline_runs" --format json',
              "echo 'SELECT count(*) FROM group_health' | engagement query -"],
    "status": ["engagement status", "engagement status --format json", "engagement status || alert-someone"],
    "prune": ["engagement prune", "engagement prune --keep-days 30"],
    "demo": ["engagement demo", "engagement demo --days 10 --users 500 --no-airflow"],
    "config": ["engagement config", "engagement config --format json"],
}  # fmt: skip


def _add_examples(sub) -> None:
    for name, parser in sub.choices.items():
        if name in EXAMPLES:
            examples = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
            parser.epilog = f"{parser.epilog}\n\n{examples}" if parser.epilog else examples
            parser.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engagement",
        description="Cross-platform engagement pipeline (Kafka -> Spark -> gold tables).",
        epilog="Settings come from ENGAGEMENT_* environment variables; `engagement config` shows them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", help="manage the local Kafka broker (KRaft; ENGAGEMENT_KAFKA_NODES nodes, default 1)")
    p.add_argument("action", choices=["install", "start", "stop", "status"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("topics", help="create the contract's topics (idempotent)")
    p.add_argument("action", choices=["create"])
    p.add_argument("--partitions", type=int, default=0, help="partitions per topic (default ENGAGEMENT_TOPIC_PARTITIONS)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("generate", help="generate synthetic traffic to Kafka or a JSON-lines file")
    _add_generator_options(p)
    p.add_argument("--until", type=_date, help="only messages emitted on or before this local date")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--to-kafka", action="store_true", help="produce to Kafka (the default)")
    target.add_argument("--output", help="write JSON lines to this file instead")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("load", help="run the loader (Kafka -> bronze / quarantine)")
    p.add_argument("--until-idle", action="store_true", help="exit once caught up")
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--workers", type=int, help="loader processes in the group, about one core each (default: ENGAGEMENT_LOADER_WORKERS, 1)")
    p.set_defaults(func=cmd_load)

    for name, func, help_text in (
        ("run", cmd_run, "run the daily pipeline for a date or a range"),
        ("validate", cmd_validate, "run one layer's quality gate"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name == "validate":
            p.add_argument("layer", choices=["bronze", "silver", "gold"])
            p.add_argument("--as-of", type=_date, required=True)
            p.add_argument("--format", choices=["text", "json"], default="text")
        else:
            p.add_argument("--as-of", type=_date)
            p.add_argument("--from", dest="start", type=_date)
            p.add_argument("--to", dest="end", type=_date)
            p.add_argument(
                "--full-refresh",
                action="store_true",
                help="rebuild silver from all of bronze and every gold table whole (repairs; the daily "
                "run is incremental and gives the same rows); with a range, the first date only",
            )
        p.set_defaults(func=func)

    p = sub.add_parser("query", help="SQL over the gold tables (- reads it from stdin)")
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--as-of", type=_date, help="as published on this date (default: latest)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "status",
        help="broker, consumer lag, loader, runs, freshness; exit code for probes",
        epilog="Exit codes: 0 nothing needs attention, 3 no broker answers, 4 consumer lag above "
        "ENGAGEMENT_STATUS_MAX_LAG, 5 nothing published, 6 the last run failed, 7 gold older than "
        "ENGAGEMENT_STATUS_MAX_STALE_DAYS (with several, the smallest).",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "report",
        help="the analysts' report: a page of charts (--output F.html), or headline numbers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  engagement report --output report.html       charts of the newest publication, one file\n"
        "  engagement report --as-of 2026-11-04 --output nov4.html\n"
        "  engagement report                            headline conversion and retention in the terminal\n"
        "  engagement report --format json",
    )
    p.add_argument("--as-of", type=_date, help="as published on this date (default: the newest publication)")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table",
                   help="html: the page of charts (the default when --output ends in .html)")  # fmt: skip
    p.add_argument("--output", help="write to this file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "tables",
        help="the data dictionary: every table and column with its type, key and meaning",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  engagement tables                      every table, one line each\n"
        "  engagement tables join_conversion      its columns, types, key and meanings\n"
        "  engagement tables silver.events --format json\n"
        "  engagement tables --format markdown > docs/tables.md",
    )
    p.add_argument("table", nargs="?", help="a table, bare (events) or with its layer (silver.events)")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "prune",
        help="remove publications older than the retention (the newest stays) and gold files nothing names",
        description="Publications of dates more than --keep-days old stop being queryable with --as-of; the "
        "newest publication always stays. Gold builds that no kept publication names (superseded re-runs, "
        "failed runs) are removed once a day old, and the silver of every published date but the newest.",
    )
    p.add_argument("--keep-days", type=int, default=None, help="default: ENGAGEMENT_SNAPSHOT_RETENTION_DAYS")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser(
        "s3",
        help="run an S3-compatible server (SeaweedFS) in the foreground",
        description="Serves S3 on port 8333 with the key pair of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
        "and creates the bucket of ENGAGEMENT_WAREHOUSE_URI (s3://bucket/...) if it is missing. "
        "Example (what docker-compose.yml runs): engagement s3 serve --dir /data/s3 --host seaweedfs",
    )
    p.add_argument("action", choices=["serve"])
    p.add_argument("--dir", help="where the data lives (default: $ENGAGEMENT_HOME/s3)")
    p.add_argument("--host", default="127.0.0.1", help="the name other containers reach it by")
    p.set_defaults(func=cmd_s3)

    p = sub.add_parser("demo", help="start Kafka, generate, load, run the DAG, print headline numbers")
    p.add_argument("--days", type=int, default=35)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--no-airflow", action="store_true", help="run the steps directly instead of the DAG")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="show the effective settings (secrets masked)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_config)
    _add_examples(sub)
    return parser


# Loggers whose INFO lines are this program's own: shown on the terminal. Everything else
# (Spark's py4j, Airflow, Great Expectations, kafka-python, ...) goes to the log file only,
# unless --verbose, and reaches the terminal only as a WARNING or worse of our own.
OWN_LOGGERS = ("engagement", "streaming", "jobs", "expectations", "core", "dags")


class _OwnMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "expectations.runner" and record.levelno < logging.WARNING:
            return False  # a gate's report: the command prints it, or its error says what failed
        return record.name.split(".", 1)[0] in OWN_LOGGERS


class _ConsoleFormat(logging.Formatter):
    """``message`` for INFO, ``warning: message`` above; with timestamps for a long-running
    service (``engagement load``), whose lines are read later."""

    def __init__(self, timestamps: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps else "%(message)s")
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.timestamps and record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


def _configure_logging(command: str | None, *, verbose: bool) -> Path | None:
    """Terminal: our own messages (everything with --verbose). File: everything, at INFO (DEBUG
    with --verbose), in ``$ENGAGEMENT_HOME/logs/engagement-<command>.log``; its path is returned
    (None when it cannot be written)."""
    from expectations.runner import CHATTY_LOGGERS

    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_ConsoleFormat(timestamps=verbose or command == "load"))
    if not verbose:
        console.addFilter(_OwnMessages())
    root.addHandler(console)
    # Chatty at DEBUG even in the file; --verbose shows them.
    for noisy in ("py4j", "kafka", "botocore", "urllib3", "s3transfer", "filelock", *CHATTY_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    home = Path(os.environ.get("ENGAGEMENT_HOME", "var"))
    log_file = (home / "logs" / f"engagement-{command or 'help'}.log").resolve()
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    os.environ.setdefault("ENGAGEMENT_LOG_FILE", str(log_file))  # for Spark's log4j (jobs.session)
    return log_file


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_file = _configure_logging(args.command, verbose=args.verbose)
    if args.verbose:
        os.environ["ENGAGEMENT_VERBOSE"] = "1"  # Spark keeps logging to the terminal too
    try:
        settings = get_settings()
        return args.func(settings, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`engagement tables | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except UserError as exc:
        if args.verbose:
            traceback.print_exc()
            if exc.details:
                print(exc.details, file=sys.stderr)
        logging.getLogger("engagement.cli").debug("failed", exc_info=True)
        if log_file is not None and not args.verbose:
            print(f"(the full log, other components' messages included: {log_file})", file=sys.stderr)
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
