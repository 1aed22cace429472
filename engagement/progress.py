"""Progress of long work on the terminal: one updating line on a terminal, a line every few
seconds otherwise (a log file, CI)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call with the running count; ``final=True`` prints the last figure whatever the time."""

    def __init__(self, label: str, every: float = 2.0) -> None:
        self.label = label
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, count: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        rate = count / max(now - self.started, 1e-6)
        text = f"{self.label}: {count:,} ({rate:,.0f}/s)"
        if self.tty:
            print("\r" + text, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)
