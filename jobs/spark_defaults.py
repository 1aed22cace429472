"""The deployment's ``spark-defaults.conf``, read the way spark-submit finds it.

The project starts its drivers with JVM options of its own (the class archive, the log file)
in ``spark.driver.defaultJavaOptions``, the key Spark places before the deployment's
``spark.driver.extraJavaOptions``. A ``--conf`` for a key replaces that key's value in
``spark-defaults.conf``, so an administrator's own default options (a garbage collector, a
trust store) would silently stop applying; :func:`driver_default_java_options` keeps them first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

DRIVER_DEFAULT_JAVA_OPTIONS = "spark.driver.defaultJavaOptions"


def conf_folder(environ: Mapping[str, str] | None = None) -> Path:
    """``$SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``, else the conf folder of the Spark that
    pyspark ships (which its launcher uses as SPARK_HOME)."""
    environ = os.environ if environ is None else environ
    if environ.get("SPARK_CONF_DIR"):
        return Path(environ["SPARK_CONF_DIR"])
    if environ.get("SPARK_HOME"):
        return Path(environ["SPARK_HOME"]) / "conf"
    import pyspark

    return Path(pyspark.__file__).parent / "conf"


def defaults_file(environ: Mapping[str, str] | None = None) -> Path:
    """The ``spark-defaults.conf`` spark-submit reads (in :func:`conf_folder`)."""
    return conf_folder(environ) / "spark-defaults.conf"


# A key ends at the first unescaped "=", ":" or blank; one "=" or ":" may follow the blanks.
_KEY_VALUE = re.compile(r"((?:\\.|[^\s=:\\])*)\s*[=:]?\s*(.*)", re.DOTALL)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def read_properties(text: str) -> dict[str, str]:
    """A Java properties file (the format of ``spark-defaults.conf``): comments (``#``, ``!``),
    ``key value``, ``key=value`` or ``key: value``, lines continued by a trailing backslash,
    and backslash escapes. Values are trimmed, as Spark trims them."""
    properties: dict[str, str] = {}
    for line in _logical_lines(text):
        key, value = _KEY_VALUE.match(line).groups()
        properties[_unescape(key)] = _unescape(value).strip()
    return properties


def _logical_lines(text: str) -> Iterator[str]:
    """The file's entries: comments and blank lines dropped, continued lines joined."""
    logical = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd number of backslashes continues the line
            logical += line[:-1]
            continue
        yield logical + line
        logical = ""
    if logical:
        yield logical


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped.startswith("u") and len(escaped) == 5:
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def option_string(options: list[str]) -> str:
    """JVM options as one Spark ``*JavaOptions`` value (Spark splits it as a shell would, so an
    option with a space is quoted)."""
    return " ".join(f'"{option}"' if " " in option else option for option in options)


def driver_default_java_options(own: list[str], environ: Mapping[str, str] | None = None) -> str:
    """The value to give ``spark.driver.defaultJavaOptions``: the deployment's own (from its
    ``spark-defaults.conf``), then ``own``."""
    path = defaults_file(environ)
    try:
        deployment = read_properties(path.read_text(encoding="utf-8")).get(DRIVER_DEFAULT_JAVA_OPTIONS, "")
    except FileNotFoundError:
        deployment = ""
    return " ".join(part for part in (deployment, option_string(own)) if part)
