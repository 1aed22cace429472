"""Great Expectations suites for every table the pipeline publishes, built in Python.

One factory per table returns a fresh ``gx.ExpectationSuite``; :data:`SUITES` maps
``(layer, table)`` to its factory, and :mod:`expectations.runner` validates a whole layer with
them. Every expectation carries a severity: ``critical`` (the default) stops the layer from
being published, ``warning`` is reported and nothing more. The severity is written both to
``meta={"severity": ...}`` (the project's contract, read by the runner) and to GX's own
``severity`` field, so GX's renderers and ``get_max_severity_failure`` agree with the runner.

Importing this module is cheap: ``great_expectations`` and ``pyspark`` are imported inside the
factories, because the Airflow DAG imports it at parse time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from core import tables
from core.contract import (
    CHANNELS,
    EVENT_TYPES,
    IDENTITY_TOPIC,
    KUAISHOU_TOPIC,
    MAX_ID_CHARS,
    PLATFORMS,
    RFC3339_PATTERN,
    WECHAT_TOPIC,
)
from core.tables import ACCOUNT_KINDS, FUNNELS, PROPAGATION_WINDOW_SECONDS, RETENTION_DAY_OFFSETS

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations import Expectation

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)

# Exact rates are recomputed from their counts; allow only floating-point noise.
RATE_TOLERANCE = 1e-9
# GX's type check names Spark's DataType classes (see jobs/schemas.py for the same mapping).
_SPARK_TYPE_CLASSES = {
    "string": "StringType",
    "int": "IntegerType",
    "bigint": "LongType",
    "double": "DoubleType",
    "boolean": "BooleanType",
    "date": "DateType",
    "timestamp": "TimestampType",
    "binary": "BinaryType",
}


# Building blocks -----------------------------------------------------------------------------


def _gxe() -> Any:
    import great_expectations as gx

    return gx.expectations


def _severity(severity: str) -> dict[str, Any]:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return {"meta": {"severity": severity}, "severity": severity}


def _suite(name: str, expectations: Iterable[Expectation]) -> ExpectationSuite:
    import great_expectations as gx

    # Passed to the constructor rather than add_expectation(): in GX 1.24 add_expectation looks
    # the suite up in the current context's store, so it fails without an active context.
    return gx.ExpectationSuite(name=name, expectations=list(expectations))


def _has_columns(columns: Sequence[str], *, exact: bool, severity: str = CRITICAL) -> Expectation:
    return _gxe().ExpectTableColumnsToMatchSet(
        column_set=list(columns),
        exact_match=exact,
        description="the exact column set" if exact else "all contract columns are present",
        **_severity(severity),
    )


def _not_null(
    columns: Iterable[str],
    *,
    severity: str = CRITICAL,
    row_condition: Any = None,
    why: str | None = None,
) -> list[Expectation]:
    extra: dict[str, Any] = {"row_condition": row_condition} if row_condition is not None else {}
    if why:
        extra["description"] = why
    return [
        _gxe().ExpectColumnValuesToNotBeNull(column=column, **extra, **_severity(severity))
        for column in columns
    ]


def _unique(
    columns: Sequence[str], *, severity: str = CRITICAL, why: str | None = None
) -> Expectation:
    extra = {"description": why, **_severity(severity)} if why else _severity(severity)
    if len(columns) == 1:
        return _gxe().ExpectColumnValuesToBeUnique(column=columns[0], **extra)
    return _gxe().ExpectCompoundColumnsToBeUnique(column_list=list(columns), **extra)


def _in_set(column: str, values: Iterable[Any], *, severity: str = CRITICAL) -> Expectation:
    # NULLs are not judged here: a nullable enum gets a separate not-null check where required.
    return _gxe().ExpectColumnValuesToBeInSet(
        column=column, value_set=list(values), **_severity(severity)
    )


def _id_lengths(column: str) -> Expectation:
    return _gxe().ExpectColumnValueLengthsToBeBetween(
        column=column, min_value=1, max_value=MAX_ID_CHARS, **_severity(CRITICAL)
    )


def _rfc3339(column: str) -> Expectation:
    return _gxe().ExpectColumnValuesToMatchRegex(
        column=column,
        regex=RFC3339_PATTERN,
        description="RFC 3339 with an explicit offset",
        **_severity(CRITICAL),
    )


def _between(
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    *,
    severity: str = CRITICAL,
    row_condition: Any = None,
    mostly: float | None = None,
    why: str | None = None,
) -> Expectation:
    extra: dict[str, Any] = {}
    if row_condition is not None:
        extra["row_condition"] = row_condition
    if mostly is not None:
        extra["mostly"] = mostly
    if why:
        extra["description"] = why
    return _gxe().ExpectColumnValuesToBeBetween(
        column=column, min_value=min_value, max_value=max_value, **extra, **_severity(severity)
    )


def _counts(columns: Iterable[str]) -> list[Expectation]:
    return [_between(column, min_value=0) for column in columns]


def _rate(column: str) -> Expectation:
    # NULL (denominator 0) is allowed; NULLs are not judged by a value-range check.
    return _between(column, min_value=0, max_value=1, why="a rate lies in [0, 1]")


def _at_most(smaller: str, larger: str, *, severity: str = CRITICAL) -> Expectation:
    """``smaller <= larger`` on every row where both are present."""
    return _gxe().ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=larger,
        column_B=smaller,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        description=f"{smaller} <= {larger}",
        **_severity(severity),
    )


def _no_rows_where(condition: str, *, why: str, severity: str = CRITICAL) -> Expectation:
    """A Spark SQL predicate that no row may satisfy (for checks spanning several columns)."""
    return _gxe().UnexpectedRowsExpectation(
        unexpected_rows_query=f"SELECT * FROM {{batch}} WHERE {condition}",
        description=why,
        **_severity(severity),
    )


def _rate_matches(rate: str, numerator: str, denominator: str) -> Expectation:
    """The published rate agrees with its own counts. A warning: a mismatch is a builder bug
    worth looking at, but the range and count checks already guard what analysts rely on."""
    return _no_rows_where(
        f"(({denominator}) > 0 AND abs({rate} - ({numerator}) / ({denominator})) > {RATE_TOLERANCE})"
        f" OR (({denominator}) = 0 AND {rate} IS NOT NULL)",
        why=f"{rate} = {numerator} / ({denominator}), NULL when the denominator is 0",
        severity=WARNING,
    )


def _first_of_month(column: str) -> Expectation:
    return _no_rows_where(
        f"{column} <> trunc({column}, 'MM')", why=f"{column} is the first day of a month"
    )


def _not_empty(*, severity: str = WARNING) -> Expectation:
    return _gxe().ExpectTableRowCountToBeBetween(
        min_value=1, description="the table has rows", **_severity(severity)
    )


def _column(name: str) -> Any:
    from great_expectations.expectations.row_conditions import Column

    return Column(name)


def _gold(name: str, checks: Iterable[Expectation]) -> ExpectationSuite:
    """A gold suite: the defined columns, types and non-null columns, a unique key, then the
    table's own checks."""
    table = tables.GOLD[name]
    return _suite(f"gold_{name}", [*_schema_checks(table), _unique(table.key, why="one row per key"), *checks])


def _schema_checks(table: tables.Table) -> list[Expectation]:
    """Exact columns, Spark types and non-null columns of a table defined in ``core.tables``."""
    gxe = _gxe()
    checks: list[Expectation] = [_has_columns(table.column_names, exact=True)]
    for column in table.columns:
        checks.append(
            gxe.ExpectColumnValuesToBeOfType(
                column=column.name, type_=_SPARK_TYPE_CLASSES[column.type], **_severity(CRITICAL)
            )
        )
    checks += _not_null(table.required)
    return checks


def _event_rules() -> list[Expectation]:
    """Rules of the event contract (DESIGN section 3) shared by bronze and silver events."""
    event_type = _column("event_type")
    return [
        _in_set("event_type", EVENT_TYPES),
        _in_set("platform", PLATFORMS),
        _in_set("channel", CHANNELS),
        _in_set("target_platform", PLATFORMS),
        *_not_null(
            ["content_id"],
            row_condition=event_type.is_in(["like", "share"]),
            why="likes and shares name their content",
        ),
        *_not_null(
            ["group_id", "channel"],
            row_condition=event_type == "join",
            why="joins name their group and channel",
        ),
        *_not_null(
            ["target_platform"],
            row_condition=event_type == "share",
            why="shares name their target platform",
        ),
    ]


# Bronze --------------------------------------------------------------------------------------


def bronze_events_suite() -> ExpectationSuite:
    """bronze.events: what the loader accepted from the event topics, as it arrived."""
    return _suite(
        "bronze_events",
        [
            # Bronze keeps what arrived, so extra columns are tolerated; missing ones are not.
            _has_columns(tables.BRONZE_EVENTS.column_names, exact=False),
            *_not_null(tables.BRONZE_EVENTS.required),
            _in_set("schema_version", [1]),
            *_event_rules(),
            _id_lengths("event_id"),
            _id_lengths("user_id"),
            _rfc3339("event_time"),
            _gxe().ExpectColumnPairValuesToBeInSet(
                column_A="kafka_topic",
                column_B="platform",
                value_pairs_set=[(KUAISHOU_TOPIC, "kuaishou"), (WECHAT_TOPIC, "wechat")],
                description="platform matches the topic it arrived on",
                **_severity(CRITICAL),
            ),
            *_counts(["kafka_partition", "kafka_offset"]),
            # A redelivered message is stored again (offsets are committed after the write), so
            # repeated Kafka coordinates or event_ids are possible here; silver removes them.
            _unique(
                ["kafka_topic", "kafka_partition", "kafka_offset"],
                severity=WARNING,
                why="each Kafka message stored once",
            ),
            _not_empty(),
        ],
    )


def bronze_identity_suite() -> ExpectationSuite:
    """bronze.identity: account links from the identity topic, as they arrived."""
    return _suite(
        "bronze_identity",
        [
            _has_columns(tables.BRONZE_IDENTITY.column_names, exact=False),
            *_not_null(tables.BRONZE_IDENTITY.required),
            _in_set("kafka_topic", [IDENTITY_TOPIC]),
            _rfc3339("linked_at"),
            *_counts(["kafka_partition", "kafka_offset"]),
            _unique(["link_id"], severity=WARNING, why="link_id is unique (a repeat is a redelivery)"),
        ],
    )


# Silver --------------------------------------------------------------------------------------


def silver_events_suite() -> ExpectationSuite:
    """silver.events: typed, deduplicated events with event_date and person_id."""
    return _suite(
        "silver_events",
        [
            *_schema_checks(tables.SILVER_EVENTS),
            _unique(tables.SILVER_EVENTS.key, why="deduplicated: one row per event_id"),
            *_event_rules(),
            _not_empty(),
        ],
    )


def silver_identity_map_suite() -> ExpectationSuite:
    """silver.identity_map: every account in exactly one person."""
    return _suite(
        "silver_identity_map",
        [
            *_schema_checks(tables.IDENTITY_MAP),
            _unique(tables.IDENTITY_MAP.key, why="every account belongs to exactly one person"),
            _in_set("platform", ACCOUNT_KINDS),
        ],
    )


# Gold ----------------------------------------------------------------------------------------


def gold_daily_engagement_suite() -> ExpectationSuite:
    """gold.daily_engagement: events and distinct users per platform, day and event type."""
    return _gold(
        "daily_engagement",
        [
            _in_set("platform", PLATFORMS),
            _in_set("event_type", EVENT_TYPES),
            *_counts(["events", "users"]),
            _at_most("users", "events"),
        ],
    )


def gold_join_conversion_suite() -> ExpectationSuite:
    """gold.join_conversion: invitation and content funnels, 7-day window."""
    platform, funnel, attempts = _column("platform"), _column("funnel"), _column("attempts")
    # Industry bands (DESIGN section 1): WeChat invitations 18-25 %, Kuaishou public traffic
    # 5-8 %. Judged only on cohorts large enough for the rate to mean something, and loosely.
    large = attempts >= 100
    return _gold(
        "join_conversion",
        [
            _in_set("platform", PLATFORMS),
            _in_set("funnel", FUNNELS),
            *_counts(["attempts", "conversions"]),
            _at_most("conversions", "attempts"),
            _rate("conversion_rate"),
            _rate_matches("conversion_rate", "conversions", "attempts"),
            _between(
                "conversion_rate", 0.10, 0.40,
                severity=WARNING, mostly=0.9,
                row_condition=(platform == "wechat") & (funnel == "invite") & large,
                why="WeChat invitation conversion near the industry 18-25 %",
            ),
            _between(
                "conversion_rate", 0.02, 0.15,
                severity=WARNING, mostly=0.9,
                row_condition=(platform == "kuaishou") & (funnel == "content") & large,
                why="Kuaishou content conversion near the industry 5-8 %",
            ),
        ],
    )


def gold_retention_cohorts_suite() -> ExpectationSuite:
    """gold.retention_cohorts: day-N retention of each first-join cohort."""
    return _gold(
        "retention_cohorts",
        [
            _in_set("platform", PLATFORMS),
            _in_set("day_offset", RETENTION_DAY_OFFSETS),
            *_counts(["cohort_users", "retained_users"]),
            _at_most("retained_users", "cohort_users"),
            _rate("retention_rate"),
            _rate_matches("retention_rate", "retained_users", "cohort_users"),
        ],
    )


def gold_member_lifetime_suite() -> ExpectationSuite:
    """gold.member_lifetime: average and median member lifetime per monthly cohort."""
    return _gold(
        "member_lifetime",
        [
            _in_set("platform", PLATFORMS),
            _first_of_month("cohort_month"),
            *_counts(["users", "avg_lifetime_days", "median_lifetime_days"]),
            _between("users", min_value=1, severity=WARNING, why="a cohort has members"),
        ],
    )


def gold_group_health_suite() -> ExpectationSuite:
    """gold.group_health: per-group activity as of the run's logical date."""
    return _gold(
        "group_health",
        [
            _in_set("platform", PLATFORMS),
            _in_set("origin_channel", CHANNELS),
            _at_most("first_event_date", "last_event_date"),
            _at_most("last_event_date", "as_of_date"),
            *_counts(["members", "active_members_7d", "silent_members_7d", "inactive_members_14d"]),
            _at_most("active_members_7d", "members"),
            _at_most("silent_members_7d", "members"),
            # 14 days without activity implies 7 days without it.
            _at_most("inactive_members_14d", "silent_members_7d"),
            _no_rows_where(
                "active_members_7d + silent_members_7d <> members",
                why="every member is either active or silent in the 7-day window",
            ),
        ],
    )


def gold_group_survival_suite() -> ExpectationSuite:
    """gold.group_survival: 30-day survival of groups by origin channel and cohort month."""
    return _gold(
        "group_survival",
        [
            _in_set("platform", PLATFORMS),
            _in_set("origin_channel", CHANNELS),
            _first_of_month("cohort_month"),
            *_counts(["groups", "survived_30d"]),
            _at_most("survived_30d", "groups"),
            _rate("survival_rate_30d"),
            _rate_matches("survival_rate_30d", "survived_30d", "groups"),
        ],
    )


def gold_cross_platform_propagation_suite() -> ExpectationSuite:
    """gold.cross_platform_propagation: Kuaishou likes re-shared on WeChat within 24 hours."""
    latencies = ["latency_p50_s", "latency_p90_s", "latency_p99_s"]
    return _gold(
        "cross_platform_propagation",
        [
            *_counts(["likes", "propagated"]),
            _at_most("propagated", "likes"),
            _rate("propagation_rate"),
            _rate_matches("propagation_rate", "propagated", "likes"),
            *[
                _between(column, 0, PROPAGATION_WINDOW_SECONDS, why="latency within the 24-hour window")
                for column in latencies
            ],
            _at_most("latency_p50_s", "latency_p90_s"),
            _at_most("latency_p90_s", "latency_p99_s"),
        ],
    )


def gold_cross_platform_overlap_suite() -> ExpectationSuite:
    """gold.cross_platform_overlap: persons who are group members on both platforms."""
    return _gold(
        "cross_platform_overlap",
        [
            *_counts(["kuaishou_members", "wechat_members", "both"]),
            _at_most("both", "kuaishou_members"),
            _at_most("both", "wechat_members"),
            _rate("overlap_rate"),
            # Persons who joined any group = Kuaishou members + WeChat members - both.
            _rate_matches("overlap_rate", "both", "kuaishou_members + wechat_members - both"),
        ],
    )


SUITES: dict[tuple[str, str], Callable[[], ExpectationSuite]] = {
    ("bronze", "events"): bronze_events_suite,
    ("bronze", "identity"): bronze_identity_suite,
    ("silver", "events"): silver_events_suite,
    ("silver", "identity_map"): silver_identity_map_suite,
    ("gold", "daily_engagement"): gold_daily_engagement_suite,
    ("gold", "join_conversion"): gold_join_conversion_suite,
    ("gold", "retention_cohorts"): gold_retention_cohorts_suite,
    ("gold", "member_lifetime"): gold_member_lifetime_suite,
    ("gold", "group_health"): gold_group_health_suite,
    ("gold", "group_survival"): gold_group_survival_suite,
    ("gold", "cross_platform_propagation"): gold_cross_platform_propagation_suite,
    ("gold", "cross_platform_overlap"): gold_cross_platform_overlap_suite,
}

# The tables of each layer, in SUITES order.
LAYERS: dict[str, tuple[str, ...]] = {
    layer: tuple(table for (each, table) in SUITES if each == layer)
    for layer in ("bronze", "silver", "gold")
}
