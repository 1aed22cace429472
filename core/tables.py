"""The schema of every table the pipeline writes, written once (DESIGN sections 3 and 5).

Each :class:`Table` lists its columns in order, with type, nullability and a one-line meaning,
and its key. Everything else reads them from here: the loader's Parquet schemas
(``streaming.bronze``), the Spark schemas and the final ``select`` of every gold builder
(``jobs.schemas``), the quality suites (``expectations.suites``), the PostgreSQL DDL
(``engagement.postgres``) and the data dictionary.

Types are Spark SQL's simple type names (``string``, ``int``, ``bigint``, ``double``,
``boolean``, ``date``, ``timestamp``, ``binary``); each part maps them to its own engine. A
column that is not ``nullable`` never holds NULL in a correct table, and the quality gate of
its layer checks that.

The parameters of the definitions (windows, day offsets, funnels) live here too, so the
builders, the suites and the generator's known truth agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.contract import EVENT_FIELDS, IDENTITY_FIELDS

TYPES = ("string", "int", "bigint", "double", "boolean", "date", "timestamp", "binary")

# Parameters of the gold definitions (DESIGN section 5).
FUNNELS = ("invite", "content")
CONVERSION_WINDOW_DAYS = 7
RETENTION_DAY_OFFSETS = (1, 7, 14, 30)
ACTIVE_WINDOW_DAYS = 7
INACTIVE_WINDOW_DAYS = 14
SURVIVAL_DAYS = 30
PROPAGATION_WINDOW_SECONDS = 24 * 60 * 60
LATENCY_PERCENTILES = (0.5, 0.9, 0.99)
# silver.identity_map.platform: the kind of account.
ACCOUNT_KINDS = ("kuaishou", "wechat", "wechat_unionid")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    meaning: str
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}; use one of {TYPES}")


@dataclass(frozen=True)
class Table:
    name: str
    layer: str
    meaning: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.key) - set(self.column_names)
        if unknown:
            raise ValueError(f"table {self.name}: key columns {sorted(unknown)} are not columns")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that may never be NULL."""
        return tuple(column.name for column in self.columns if not column.nullable)

    @property
    def is_snapshot(self) -> bool:
        """A gold table with its own ``as_of_date`` column keeps one snapshot per published
        date; the others hold the whole corrected history as of the latest one."""
        return "as_of_date" in self.column_names

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")


def _c(name: str, type_: str, meaning: str, *, nullable: bool = False) -> Column:
    return Column(name, type_, meaning, nullable)


# Bronze and quarantine: what arrived, with its Kafka coordinates ------------------------------

_EVENT_FIELD_MEANINGS = {
    "event_id": ("string", "unique id; a repeated event_id is a redelivery and counts once", False),
    "schema_version": ("bigint", "version of the event contract (1)", False),
    "event_type": ("string", "like, share or join", False),
    "platform": ("string", "kuaishou or wechat; matches the topic it arrived on", False),
    "user_id": ("string", "platform-native user id (Kuaishou user id, WeChat OpenID)", False),
    "event_time": ("string", "RFC 3339 instant with an explicit offset, as sent", False),
    "content_id": ("string", "the video, live stream or article (likes and shares)", True),
    "group_id": ("string", "the group joined, promoted by a like, or invited to by a share", True),
    "channel": ("string", "how a join came about: invite, qr_code, content, ...", True),
    "inviter_user_id": ("string", "on a join: whose invitation or QR code was used", True),
    "target_platform": ("string", "on a share: where it was shared to", True),
}
_IDENTITY_FIELD_MEANINGS = {
    "link_id": ("string", "unique id of the account link", False),
    "kuaishou_user_id": ("string", "the Kuaishou account", False),
    "wechat_openid": ("string", "the WeChat OpenID it authorised", False),
    "wechat_unionid": ("string", "the WeChat UnionID, when WeChat gave one", True),
    "linked_at": ("string", "RFC 3339 instant of the link, as sent", False),
}
assert tuple(_EVENT_FIELD_MEANINGS) == EVENT_FIELDS and tuple(_IDENTITY_FIELD_MEANINGS) == IDENTITY_FIELDS

KAFKA_COLUMNS = (
    _c("kafka_topic", "string", "topic the message was read from"),
    _c("kafka_partition", "int", "partition the message was read from"),
    _c("kafka_offset", "bigint", "offset of the message in its partition"),
    _c("kafka_key", "string", "message key, as UTF-8", nullable=True),
    _c("kafka_timestamp", "timestamp", "the message's Kafka timestamp (UTC)", nullable=True),
    _c("ingest_time", "timestamp", "when the loader wrote it (UTC)"),
)
_EXTRA = _c("extra", "string", "fields outside the contract, as a JSON object (kept, ignored downstream)", nullable=True)

BRONZE_EVENTS = Table(
    "events",
    "bronze",
    "every valid engagement event as it arrived, redeliveries included",
    (*(_c(name, *spec[:2], nullable=spec[2]) for name, spec in _EVENT_FIELD_MEANINGS.items()), _EXTRA, *KAFKA_COLUMNS),
    key=("kafka_topic", "kafka_partition", "kafka_offset"),
)
BRONZE_IDENTITY = Table(
    "identity",
    "bronze",
    "every valid account link as it arrived",
    (*(_c(name, *spec[:2], nullable=spec[2]) for name, spec in _IDENTITY_FIELD_MEANINGS.items()), _EXTRA, *KAFKA_COLUMNS),
    key=("kafka_topic", "kafka_partition", "kafka_offset"),
)
QUARANTINE = Table(
    "quarantine",
    "bronze",
    "every message that broke the contract, with the rule it broke (also on the dead-letter topic)",
    (
        _c("kafka_topic", "string", "topic the message was read from"),
        _c("kafka_partition", "int", "partition the message was read from"),
        _c("kafka_offset", "bigint", "offset of the message in its partition"),
        _c("kafka_key", "binary", "message key, original bytes", nullable=True),
        _c("kafka_timestamp", "timestamp", "the message's Kafka timestamp (UTC)", nullable=True),
        _c("value", "binary", "message value, original bytes", nullable=True),
        _c("error_class", "string", "which rule it broke (InvalidJson, MissingField, ...)"),
        _c("error_message", "string", "what exactly was wrong"),
        _c("ingest_time", "timestamp", "when the loader wrote it (UTC)"),
    ),
    key=("kafka_topic", "kafka_partition", "kafka_offset"),
)

# Silver ---------------------------------------------------------------------------------------

SILVER_EVENTS = Table(
    "events",
    "silver",
    "valid events, typed and deduplicated by event_id, with reporting-zone date and person",
    (
        _c("event_id", "string", "unique id of the event"),
        _c("event_type", "string", "like, share or join"),
        _c("platform", "string", "kuaishou or wechat"),
        _c("user_id", "string", "platform-native user id"),
        _c("event_time", "timestamp", "the instant of the event (UTC)"),
        _c("event_date", "date", "calendar date of event_time in the reporting time zone"),
        _c("content_id", "string", "the video, live stream or article", nullable=True),
        _c("group_id", "string", "the group joined, promoted or invited to", nullable=True),
        _c("channel", "string", "how a join came about", nullable=True),
        _c("inviter_user_id", "string", "on a join: whose invitation was used", nullable=True),
        _c("target_platform", "string", "on a share: where it was shared to", nullable=True),
        _c("person_id", "string", "the person behind the account (identity resolution)"),
    ),
    key=("event_id",),
)
IDENTITY_MAP = Table(
    "identity_map",
    "silver",
    "every account, linked or not, in exactly one person",
    (
        _c("person_id", "string", "first 16 hex digits of sha256 of the person's smallest 'kind:id'"),
        _c("platform", "string", "kind of account: kuaishou, wechat (OpenID) or wechat_unionid"),
        _c("user_id", "string", "the account id"),
    ),
    key=("platform", "user_id"),
)

# Gold (DESIGN section 5) ----------------------------------------------------------------------

_PLATFORM = _c("platform", "string", "kuaishou or wechat")

DAILY_ENGAGEMENT = Table(
    "daily_engagement",
    "gold",
    "events and distinct users per platform, day and event type",
    (
        _PLATFORM,
        _c("event_date", "date", "calendar day in the reporting time zone"),
        _c("event_type", "string", "like, share or join"),
        _c("events", "bigint", "deduplicated events"),
        _c("users", "bigint", "distinct user_id"),
    ),
    key=("platform", "event_date", "event_type"),
)
JOIN_CONVERSION = Table(
    "join_conversion",
    "gold",
    "invitation and content funnels: attempts converted into joins within 7 days",
    (
        _PLATFORM,
        _c("cohort_date", "date", "day of the invitation, or of the first like of the day"),
        _c("funnel", "string", "invite or content"),
        _c("attempts", "bigint", "invitations, or (user, group) pairs liking before joining"),
        _c("conversions", "bigint", "attempts followed by a join within 7 days"),
        _c("conversion_rate", "double", "conversions / attempts; NULL without attempts", nullable=True),
    ),
    key=("platform", "cohort_date", "funnel"),
)
RETENTION_COHORTS = Table(
    "retention_cohorts",
    "gold",
    "day-N retention of each first-join cohort",
    (
        _PLATFORM,
        _c("cohort_date", "date", "date of the users' first join on the platform"),
        _c("day_offset", "int", "N in 1, 7, 14, 30"),
        _c("cohort_users", "bigint", "users whose first join was on cohort_date"),
        _c("retained_users", "bigint", "of them, active on the platform on cohort_date + N"),
        _c("retention_rate", "double", "retained_users / cohort_users", nullable=True),
    ),
    key=("platform", "cohort_date", "day_offset"),
)
MEMBER_LIFETIME = Table(
    "member_lifetime",
    "gold",
    "days from a member's first join to their last event, per monthly cohort",
    (
        _PLATFORM,
        _c("cohort_month", "date", "first day of the month of the first join"),
        _c("users", "bigint", "members of the cohort"),
        _c("avg_lifetime_days", "double", "average lifetime in days, up to as_of_date"),
        _c("median_lifetime_days", "double", "exact interpolated median lifetime in days"),
    ),
    key=("platform", "cohort_month"),
)
GROUP_HEALTH = Table(
    "group_health",
    "gold",
    "each group's members, activity and 30-day survival as of a date",
    (
        _PLATFORM,
        _c("group_id", "string", "the group"),
        _c("as_of_date", "date", "the last complete day the snapshot covers"),
        _c("origin_channel", "string", "channel of the group's earliest join; NULL if nobody joined", nullable=True),
        _c("first_event_date", "date", "date of the group's first group-scoped event"),
        _c("last_event_date", "date", "date of its last group-scoped event up to as_of_date"),
        _c("members", "bigint", "distinct users who ever joined"),
        _c("active_members_7d", "bigint", "members with any event on the platform in the last 7 days"),
        _c("silent_members_7d", "bigint", "members without any in the last 7 days (warn)"),
        _c("inactive_members_14d", "bigint", "members without any in the last 14 days (clean-up)"),
        _c("alive_30d", "boolean", "a group-scoped event on or after day 30; NULL while undecided", nullable=True),
    ),
    key=("platform", "group_id", "as_of_date"),
)
GROUP_SURVIVAL = Table(
    "group_survival",
    "gold",
    "share of groups alive after 30 days, by origin channel and month of birth",
    (
        _PLATFORM,
        # NULL for groups nobody joined: such groups are a row of their own, so this key column
        # is nullable.
        _c("origin_channel", "string", "channel of the groups' earliest join", nullable=True),
        _c("cohort_month", "date", "first day of the month of first_event_date"),
        _c("groups", "bigint", "groups whose 30 days are over"),
        _c("survived_30d", "bigint", "of them, alive after 30 days"),
        _c("survival_rate_30d", "double", "survived_30d / groups", nullable=True),
    ),
    key=("platform", "origin_channel", "cohort_month"),
)
CROSS_PLATFORM_PROPAGATION = Table(
    "cross_platform_propagation",
    "gold",
    "Kuaishou likes by linked persons re-shared on WeChat within 24 hours",
    (
        _c("event_date", "date", "day of the Kuaishou likes"),
        _c("likes", "bigint", "likes by persons with a linked WeChat account"),
        _c("propagated", "bigint", "likes whose content the same person shared on WeChat within 24 h"),
        _c("propagation_rate", "double", "propagated / likes", nullable=True),
        _c("latency_p50_s", "double", "median seconds from like to earliest share", nullable=True),
        _c("latency_p90_s", "double", "90th percentile of that latency, seconds", nullable=True),
        _c("latency_p99_s", "double", "99th percentile of that latency, seconds", nullable=True),
    ),
    key=("event_date",),
)
CROSS_PLATFORM_OVERLAP = Table(
    "cross_platform_overlap",
    "gold",
    "persons who are group members on both platforms",
    (
        _c("as_of_date", "date", "the last complete day the snapshot covers"),
        _c("kuaishou_members", "bigint", "persons who joined a group on Kuaishou"),
        _c("wechat_members", "bigint", "persons who joined a group on WeChat"),
        _c("both", "bigint", "persons who joined on both"),
        _c("overlap_rate", "double", "both / persons who joined any group", nullable=True),
    ),
    key=("as_of_date",),
)

# Operations -----------------------------------------------------------------------------------

PIPELINE_RUNS = Table(
    "pipeline_runs",
    "ops",
    "every run of the daily pipeline, from the CLI or Airflow, and how it ended",
    (
        _c("run_id", "string", "Airflow's run id, or cli__<start time> for `engagement run`"),
        _c("as_of_date", "date", "the logical date: the last complete day the run covers"),
        _c("triggered_by", "string", "scheduled, backfill, manual[:user] (Airflow run type, who triggered it) or cli"),
        _c("started_at", "timestamp", "when the first step started (UTC)"),
        _c("ended_at", "timestamp", "when the run succeeded or failed (UTC); NULL while running", nullable=True),
        _c("status", "string", "running, success or failed"),
        _c("failed_step", "string", "the step that failed", nullable=True),
        _c("error", "string", "the failure, one line", nullable=True),
        _c("row_counts", "string", "rows per silver and gold table, as a JSON object"),
        _c("gate_results", "string", "per layer: passed, critical failures, warnings, as a JSON object"),
    ),
    key=("run_id",),
)

BRONZE = {"events": BRONZE_EVENTS, "identity": BRONZE_IDENTITY}
SILVER = {table.name: table for table in (SILVER_EVENTS, IDENTITY_MAP)}
# In DESIGN order, which is also the order of building, validating and publishing.
GOLD = {
    table.name: table
    for table in (
        DAILY_ENGAGEMENT,
        JOIN_CONVERSION,
        RETENTION_COHORTS,
        MEMBER_LIFETIME,
        GROUP_HEALTH,
        GROUP_SURVIVAL,
        CROSS_PLATFORM_PROPAGATION,
        CROSS_PLATFORM_OVERLAP,
    )
}
GOLD_TABLES = tuple(GOLD)
SILVER_TABLES = tuple(SILVER)
LAYERS = {"bronze": BRONZE, "silver": SILVER, "gold": GOLD}
# Gold tables that keep every published snapshot (they carry their own as_of_date).
SNAPSHOT_TABLES = frozenset(name for name, table in GOLD.items() if table.is_snapshot)
