"""Which ``java`` a JVM part of the project runs (the Kafka broker, the Spark driver's tools)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` when it exists, else the first ``java`` on PATH (as Spark's and
    Kafka's launch scripts choose); None when there is neither."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")
