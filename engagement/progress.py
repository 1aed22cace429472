"""Progress of long work on the terminal.

On a terminal: one line redrawn in place, with a bar when the total is known (coloured unless
``NO_COLOR`` is set). Elsewhere (a log file, CI, Airflow): a plain line every few seconds, no
escape codes. Generation, loading and the daily run's steps (and the gold table being built)
report here; a daily run reports through :func:`pipeline_progress`, which the pipeline's steps
find wherever they run in this process (directly, or as tasks of ``dag.test``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

BAR_WIDTH = 28


class Progress:
    """``progress(count)`` with the running count; ``fraction``/``detail`` say how far along."""

    def __init__(self, label: str, every: float = 2.0, *, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.every = every
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = self.stream.isatty()
        self.colour = self.tty and not os.environ.get("NO_COLOR")
        self.count = 0
        self.fraction: float | None = None
        self.detail = ""
        self._drawn = False

    def __call__(self, count: int | None = None, *, final: bool = False, force: bool = False) -> None:
        if count is not None:
            self.count = count
        now = time.monotonic()
        if not (final or force) and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        text = self.render(now)
        if self.tty:
            print("\r\033[K" + text, end="\n" if final else "", file=self.stream, flush=True)
            self._drawn = not final
        else:
            print(text, file=self.stream, flush=True)

    def render(self, now: float) -> str:
        fraction = self.fraction
        if fraction is None and self.total:
            fraction = self.count / self.total
        parts = [self.label]
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = round(fraction * BAR_WIDTH)
            bar = "█" * filled + "░" * (BAR_WIDTH - filled) if self.tty else ""
            if self.colour:
                bar = f"\033[32m{bar[:filled]}\033[2m{bar[filled:]}\033[0m"
            parts.append(f"{bar} {fraction:4.0%}".strip())
        if self.detail:
            parts.append(self.detail)
        if self.count:
            rate = self.count / max(now - self.started, 1e-6)
            counted = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "")
            parts.append(f"{counted} ({rate:,.0f}/s)")
        parts.append(f"{now - self.started:.0f} s")
        return "  ".join(parts)

    def clear(self) -> None:
        """End an unfinished line (before other output is printed)."""
        if self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False


def by_day(messages: Iterable, days: int, progress: Progress) -> Iterator:
    """``messages`` (generator output, emitted day by day), telling ``progress`` the day reached."""
    first = None
    for message in messages:
        first = first or message.emit_date
        day = (message.emit_date - first).days + 1
        progress.fraction = min(day / days, 1.0)
        progress.detail = f"day {min(day, days)}/{days}"
        yield message


# The daily run's progress, when a command on a terminal asked for it ---------------------------
_pipeline: Progress | None = None
_steps: tuple[str, ...] = ()


def active() -> bool:
    """Whether a command is showing the daily run's progress (its steps need not say more)."""
    return _pipeline is not None


@contextmanager
def pipeline_progress(label: str, steps: tuple[str, ...], stream: TextIO | None = None):
    """While open, :func:`step_started` and :func:`table_started` move a bar over ``steps``."""
    global _pipeline, _steps
    _pipeline, _steps = Progress(label, stream=stream), steps
    try:
        yield _pipeline
        _pipeline.fraction, _pipeline.detail = 1.0, f"{len(steps)} steps done"
    finally:
        _pipeline(final=True)
        _pipeline, _steps = None, ()


def step_started(name: str) -> None:
    if _pipeline is None or name not in _steps:
        return
    _pipeline.fraction = _steps.index(name) / len(_steps)
    _pipeline.detail = f"step {_steps.index(name) + 1}/{len(_steps)} {name}"
    _pipeline(force=True)


def table_started(step: str, table: str, done: int, of: int) -> None:
    if _pipeline is None or step not in _steps:
        return
    _pipeline.fraction = (_steps.index(step) + done / of) / len(_steps)
    _pipeline.detail = f"step {_steps.index(step) + 1}/{len(_steps)} {step}: {table} ({done + 1}/{of})"
    _pipeline(force=True)
