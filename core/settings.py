"""One typed settings object, read from the environment (prefix ``ENGAGEMENT_``) at run time.

An optional file named by ``ENGAGEMENT_CONFIG`` holds ``KEY=VALUE`` lines with the same names;
the environment wins over the file. Defaults work on one machine. Nothing here is a secret:
passwords (e.g. ``ENGAGEMENT_POSTGRES_URL``) are read from the environment only and never
printed (see :meth:`Settings.describe`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import UserError

PREFIX = "ENGAGEMENT_"

SECRET_FIELDS = frozenset({"postgres_url", "postgres_analyst_password", "pseudonymisation_key"})


class SettingsError(UserError, ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with single-machine defaults."""

    home: Path = Path("var")
    bootstrap_servers: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    # The local broker as a KRaft cluster of this many nodes (node i listens at the i-th
    # bootstrap address, its controller at KAFKA_CONTROLLER_PORT + i - 1).
    kafka_nodes: int = 1
    topic_partitions: int = 3
    consumer_group: str = "engagement-loader"
    timezone: str = "Asia/Shanghai"
    # A scheduled run for day D starts this long after D has ended in the reporting zone.
    late_allowance_minutes: int = 60
    # Airflow task retries of engagement_daily, and the first delay (doubling each time).
    dag_retries: int = 2
    dag_retry_delay_seconds: int = 120
    spark_master: str = "local[2]"
    spark_shuffle_partitions: int = 4
    spark_driver_memory: str = "2g"
    # Loader processes `engagement load` runs in one consumer group (Kafka's unit of
    # parallelism: each decodes its own partitions on a core of its own).
    loader_workers: int = 1
    loader_batch_max_records: int = 20_000
    loader_batch_max_bytes: int = 16 * 1024 * 1024
    loader_batch_max_seconds: float = 5.0
    # A loader that does not poll for this long is evicted from its group (Kafka's
    # max.poll.interval.ms); a batch is published well within it.
    loader_max_poll_interval_ms: int = 300_000
    # `engagement status` exits non-zero above these (README, "Operate").
    status_max_lag: int = 10_000
    status_max_stale_days: int = 2
    postgres_url: str | None = field(default=None, repr=False)
    # The PostgreSQL mirror's read-only login for analysts: it reads schema gold and nothing
    # else (empty: no such role is managed). Its password, when set, is (re)applied on publish.
    postgres_analyst_role: str = "analyst"
    postgres_analyst_password: str | None = field(default=None, repr=False)
    # When set, user ids are replaced by a keyed hash (HMAC-SHA256) before they reach silver
    # (jobs.privacy). Changing it needs a full refresh. A secret: never printed.
    pseudonymisation_key: str | None = field(default=None, repr=False)
    # Where bronze, silver and gold live: a folder (default: <home>/warehouse) or
    # s3://bucket/prefix on S3-compatible storage at S3_ENDPOINT (AWS itself when unset); the
    # credentials come from the standard AWS_* environment, never from here.
    warehouse_uri: str = ""
    # Published dates stay queryable as of that date (`--as-of`) this many days; `engagement
    # prune` removes older ones (the newest publication always stays).
    snapshot_retention_days: int = 400
    # A run adds each date's new events to silver as a file of their own; a date that would then
    # hold more files than this is rewritten as one file instead (late events reach a date on
    # several runs, and a file per run would pile up).
    silver_max_files_per_date: int = 8
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"

    # Paths derived from home -------------------------------------------------------------
    @property
    def warehouse_on_object_storage(self) -> bool:
        return self.warehouse_uri.startswith("s3://")

    @property
    def warehouse(self) -> Path:
        """The warehouse folder of a local warehouse (``core.storage.warehouse_store`` serves both)."""
        if self.warehouse_on_object_storage:
            raise SettingsError(
                f"{PREFIX}WAREHOUSE_URI={self.warehouse_uri} is on object storage, and this command reads "
                "a local warehouse folder only; unset it (or point it at a folder) to use it"
            )
        if self.warehouse_uri:
            return Path(self.warehouse_uri.removeprefix("file://"))
        return self.home / "warehouse"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_port(self) -> int:
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    def describe(self) -> dict[str, str]:
        """Settings as strings for display, with secrets masked."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            out[PREFIX + f.name.upper()] = str(value)
        return out

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) and the optional config file."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, str] = {}
        config_file = env.get(PREFIX + "CONFIG")
        if config_file:
            values.update(_read_config_file(Path(config_file)))
        values.update({k: v for k, v in env.items() if k.startswith(PREFIX)})
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            if name not in values:
                continue
            raw = values[name]
            kwargs[f.name] = _convert(name, raw, f.type)
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(
                f"{PREFIX}TIMEZONE={self.timezone!r} is not an IANA time zone (e.g. Asia/Shanghai)"
            ) from exc
        if self.late_allowance_minutes < 0:
            raise SettingsError(f"{PREFIX}LATE_ALLOWANCE_MINUTES must be >= 0, got {self.late_allowance_minutes}")
        if self.snapshot_retention_days < 0:
            raise SettingsError(f"{PREFIX}SNAPSHOT_RETENTION_DAYS must be >= 0, got {self.snapshot_retention_days}")
        if self.silver_max_files_per_date < 1:
            raise SettingsError(f"{PREFIX}SILVER_MAX_FILES_PER_DATE must be >= 1, got {self.silver_max_files_per_date}")
        if self.kafka_nodes < 1:
            raise SettingsError(f"{PREFIX}KAFKA_NODES must be >= 1, got {self.kafka_nodes}")
        if self.kafka_nodes > 1 and len(self.bootstrap_servers.split(",")) != self.kafka_nodes:
            raise SettingsError(
                f"{PREFIX}KAFKA_NODES={self.kafka_nodes} needs that many addresses in {PREFIX}BOOTSTRAP_SERVERS, "
                f"one per node (e.g. 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096), got {self.bootstrap_servers!r}"
            )
        if self.loader_workers < 1:
            raise SettingsError(f"{PREFIX}LOADER_WORKERS must be >= 1, got {self.loader_workers}")
        if self.topic_partitions < 1:
            raise SettingsError(f"{PREFIX}TOPIC_PARTITIONS must be >= 1, got {self.topic_partitions}")
        try:
            self.kafka_port
        except (IndexError, ValueError) as exc:
            raise SettingsError(
                f"{PREFIX}BOOTSTRAP_SERVERS={self.bootstrap_servers!r} must look like host:port"
            ) from exc


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise SettingsError(f"{PREFIX}CONFIG points to {path}, which is not a file")
    values = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise SettingsError(f"{path}:{lineno}: expected KEY=VALUE, got {line!r}")
        key, value = line.split("=", 1)
        key = key.strip()
        if not key.startswith(PREFIX):
            key = PREFIX + key.upper()
        values[key] = value.strip().strip('"')
    return values


def _convert(name: str, raw: str, type_: object) -> object:
    type_name = str(type_)
    try:
        if type_name == "Path":
            return Path(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {type_name}") from exc
    return raw


def get_settings() -> Settings:
    """The settings of this process, read now (not at import time)."""
    return Settings.from_env()
