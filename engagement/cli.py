"""The ``engagement`` command line (placeholder while the parts land)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("engagement: not wired yet", file=sys.stderr)
    return 0
