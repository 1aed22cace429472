"""JVM libraries from Maven Central, fetched once into a cache folder by a pinned pom.

The project builds no Java: a pom lists the jars a JVM part needs (the Kafka broker, Spark's
S3 file system) and ``mvn dependency:copy-dependencies`` fetches them. A marker in the folder
records the pom's digest, so editing the pom fetches again instead of running a stale set; the
download goes to a sibling folder renamed into place at the end, so an interrupted one never
looks complete; a lock keeps two processes from fetching into the same folder at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError

MARKER = ".installed"


class MavenError(UserError):
    """Maven is missing, or could not fetch the jars; the message says what to do."""


def libs_folder(env_name: str, default: str) -> Path:
    """The folder ``$env_name`` names, or ``default`` when it is unset or empty (an empty value
    would otherwise mean the working directory, and the jars would be fetched into it)."""
    return Path(os.environ.get(env_name) or default).expanduser()


def installed(pom: Path, libs: Path) -> bool:
    """Whether ``libs`` holds the jars of exactly this ``pom``."""
    marker = libs / MARKER
    return marker.is_file() and marker.read_text().strip() == pom_digest(pom)


def pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def fetch(pom: Path, libs: Path, *, what: str, required_jar: str, size_hint: str, quiet: bool = False) -> Path:
    """Fetch the jars of ``pom`` into ``libs`` unless they are there; return ``libs``.

    ``what`` names them in messages ("Apache Kafka 4.3.1"); ``required_jar`` must be among the
    fetched files, or the fetch counts as failed.
    """
    if installed(pom, libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError(
            f"Maven (mvn) is needed once to fetch {what} from Maven Central, and it is not on PATH. "
            "Install Maven 3.6 or newer (Debian/Ubuntu: apt-get install maven; macOS: brew install maven)."
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with locked(libs.parent / ".install.lock"):
        if installed(pom, libs):
            return libs
        if not quiet:
            print(f"Fetching {what} from Maven Central into {libs} (once, about {size_hint}) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=libs.parent))
        try:
            _copy_dependencies(mvn, pom, staging, what=what, required_jar=required_jar)
            (staging / MARKER).write_text(pom_digest(pom) + "\n")
            if libs.exists():
                shutil.rmtree(libs)  # jars of an older pom: different versions must not mix
            staging.rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not quiet:
            print(f"Fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.0f}s.", file=sys.stderr, flush=True)
    return libs


def _copy_dependencies(mvn: str, pom: Path, target: Path, *, what: str, required_jar: str) -> None:
    command = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={target}"]
    advice = (
        "Check that Maven Central (https://repo.maven.apache.org) is reachable, or set a mirror/proxy in "
        "~/.m2/settings.xml, then try again"
    )
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30 * 60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise MavenError(f"Maven did not finish fetching {what} within 30 minutes. {advice}.") from exc
    if done.returncode != 0 or not (target / required_jar).is_file():
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise MavenError(
            f"Maven could not fetch {what} (exit {done.returncode}). {advice} (--verbose shows Maven's output).",
            details=f"Command: {' '.join(command)}\n{output}",
        )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
