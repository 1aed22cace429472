"""Routing micro benchmark: us per message, route() one by one vs route_batch (not a test).

Generates about 140k messages with ``streaming.generator`` (5 % invalid unless told), cuts each topic's
messages into polls of 2000 (the loader's max_poll_records), and times, in process,

* the per-message path: ``route`` per message, then ``bronze.rows_table`` over the bronze rows;
* the batch path: ``streaming.fast_route.route_batch`` per poll.

Prints the median of three repetitions of each.

    .venv/bin/python bench/route_bench.py [--invalid-rate 0.001]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.contract import IDENTITY_TOPIC  # noqa: E402
from core.layout import bronze_table_for  # noqa: E402
from streaming import bronze  # noqa: E402
from streaming.fast_route import route_batch  # noqa: E402
from streaming.generator import GeneratorConfig, generate  # noqa: E402
from streaming.loader import route  # noqa: E402

POLL = 2000
REPEATS = 3


def polls(invalid_rate: float) -> list[tuple[str, list[int], list, list, list]]:
    """The generated traffic as (topic, offsets, keys, values, timestamps) polls."""
    config = GeneratorConfig(start_date=date(2026, 3, 1), days=30, kuaishou_users=5_000, wechat_users=2_000, invalid_rate=invalid_rate)
    by_topic: dict[str, list] = {}
    for message in generate(config):
        by_topic.setdefault(message.topic, []).append(message)
    out = []
    for topic, messages in by_topic.items():
        for start in range(0, len(messages), POLL):
            chunk = messages[start : start + POLL]
            offsets = list(range(start, start + len(chunk)))
            out.append((topic, offsets, [m.key for m in chunk], [m.value for m in chunk], [1_772_367_303_250 + o for o in offsets]))
    return out


def one_by_one(topic, offsets, keys, values, timestamps, now):
    rows, quarantined = [], []
    for offset, key, value, ts in zip(offsets, keys, values, timestamps):
        routed = route(topic, 0, offset, key, value, ts, now)
        (quarantined if routed.rejection else rows).append(routed.row)
    return bronze.rows_table(rows, bronze.SCHEMAS[bronze_table_for(topic, IDENTITY_TOPIC)]), quarantined


def batch(topic, offsets, keys, values, timestamps, now):
    return route_batch(topic, 0, offsets, keys, values, timestamps, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invalid-rate", type=float, default=0.05, help="share of invalid messages (default 0.05)")
    work = polls(parser.parse_args().invalid_rate)
    total = sum(len(p[1]) for p in work)
    now = datetime.now(timezone.utc)
    print(f"{total} messages in {len(work)} polls")
    for path in (one_by_one, batch):  # warm up: first use imports and compiles (pandas, regexes)
        path(*work[0], now)
    for name, path in (("route + rows_table", one_by_one), ("route_batch", batch)):
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            for poll in work:
                path(*poll, now)
            times.append(time.perf_counter() - started)
        print(f"{name:20s} {statistics.median(times) / total * 1e6:6.2f} us/message (runs: {', '.join(f'{t:.2f}' for t in times)} s)")


if __name__ == "__main__":
    main()
