"""Validate a layer's in-memory Spark DataFrames against their suites: the gate between layers.

``validate_layer("gold", {"join_conversion": df, ...})`` runs each table's suite from
:data:`expectations.suites.SUITES` with an ephemeral Great Expectations context and returns a
:class:`LayerReport`. When any *critical* expectation fails it raises :class:`QualityGateFailed`
(unless told not to), so the Airflow task fails and the layer is not published; *warnings*
are reported and nothing more.

Importing this module is cheap; ``great_expectations`` is imported on the first validation.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from expectations.suites import CRITICAL, LAYERS, SUITES, WARNING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

# How many offending values a message quotes.
_EXAMPLES = 5
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": _EXAMPLES}

# Great Expectations logs at INFO what concerns its own developers: a line for each decorated
# function it imports (about 200), and one for each row-condition field it looks up during a
# validation (about 100 a daily run). In a task log they buried each gate's verdict; their
# warnings still show.
CHATTY_LOGGERS = (
    "great_expectations._docs_decorators",
    "great_expectations.expectations.expectation",
    "great_expectations.expectations.registry",
)

# A table Spark's optimizer estimates to be computed from at most this many bytes (its sources'
# sizes) is validated as one partition. Its suite is some 20-40 small Spark jobs, and on small
# tables their fixed costs are most of a gate. A table coalesced to one partition is known to
# be one, so an aggregate over it needs no shuffle and runs as one job instead of two (the
# bronze gate of a day of 21k events, warm: 38 jobs in 2.7-3.0 s as read, 19 in 2.1 s as one
# partition). Larger tables keep their partitions, so their scans keep both cores. The bound is
# half of Spark's default split size (spark.sql.files.maxPartitionBytes, 128 MiB).
ONE_PARTITION_AT_MOST = 64 * 1024 * 1024

_context_lock = threading.Lock()
# Several tables of a gate are validated at once, and GX's Spark metrics for SQL checks
# (UnexpectedRowsExpectation) register their batch as a temporary view named "tmp_view", of
# which a Spark session has one: two such checks at once would query each other's table (and
# pass). Those checks run one table at a time; everything else concurrently.
_SESSION_VIEW_CHECKS = frozenset({"unexpected_rows_expectation"})
_session_view_lock = threading.Lock()
_context: Any = None
# Data source names are unique per process, so repeated validations never clash.
_run_numbers = itertools.count(1)


@dataclass
class TableResult:
    """The outcome of one table's suite."""

    layer: str
    table: str
    success: bool  # every critical expectation passed
    critical_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evaluated: int = 0
    seconds: float = 0.0


@dataclass
class LayerReport:
    """The outcome of validating every given table of a layer."""

    layer: str
    results: list[TableResult] = field(default_factory=list)
    # The Great Expectations Data Docs of this gate run (its site's index.html), when written.
    data_docs: str | None = None

    @property
    def passed(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def failed_tables(self) -> list[str]:
        return [result.table for result in self.results if not result.success]

    def summary(self) -> str:
        """A multi-line report for a task log: verdict, then one block per table."""
        failures = sum(len(result.critical_failures) for result in self.results)
        warnings = sum(len(result.warnings) for result in self.results)
        if self.passed:
            verdict = f"PASSED: {len(self.results)} table(s), {warnings} warning(s)"
        else:
            verdict = (
                f"FAILED: {failures} critical failure(s) in {len(self.failed_tables)} of"
                f" {len(self.results)} table(s) ({', '.join(self.failed_tables)}),"
                f" {warnings} warning(s)"
            )
        lines = [f"Quality gate for layer {self.layer!r}: {verdict}"]
        for result in self.results:
            status = "ok" if result.success else "FAIL"
            if result.success and result.warnings:
                status = "warn"
            lines.append(
                f"  [{status:>4}] {result.table}: {result.evaluated} expectations,"
                f" {len(result.critical_failures)} critical failure(s),"
                f" {len(result.warnings)} warning(s) in {result.seconds:.1f}s"
            )
            lines += [f"         critical: {message}" for message in result.critical_failures]
            lines += [f"         warning:  {message}" for message in result.warnings]
        if not self.passed:
            lines.append(f"The {self.layer} layer was not published.")
        if self.data_docs:
            lines.append(f"Data Docs: {self.data_docs}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (for XCom, the CLI's --json, or a status file)."""
        return {
            "layer": self.layer,
            "passed": self.passed,
            "results": [asdict(result) for result in self.results],
            "data_docs": self.data_docs,
        }


class QualityGateFailed(UserError):
    """A critical expectation failed: the layer must not be published."""

    def __init__(self, report: LayerReport) -> None:
        self.report = report
        lines = [
            f"Quality gate failed for layer {report.layer!r}: critical expectations failed in"
            f" {', '.join(report.failed_tables)}; the {report.layer} layer was not published."
        ]
        for result in report.results:
            lines += [f"  {result.table}: {message}" for message in result.critical_failures]
        if report.data_docs:
            lines.append(f"Every expectation and its result: {report.data_docs}")
        super().__init__("\n".join(lines))


def validate_layer(
    layer: str,
    tables: dict[str, DataFrame],
    *,
    raise_on_failure: bool = True,
    data_docs: str | os.PathLike | None = None,
    run_name: str = "",
) -> LayerReport:
    """Validate each in-memory Spark DataFrame of ``layer`` against its suite.

    ``tables`` maps table names (``"events"``, ``"join_conversion"``, ...) to DataFrames; each
    is validated once, up to one table per core at a time, and reported in the order given.
    With ``data_docs`` (a folder), the results are also rendered as Great Expectations Data Docs
    there, under ``run_name``; the report names the site's index. Raises
    :class:`QualityGateFailed` when a critical expectation failed and ``raise_on_failure`` is
    true; ``ValueError`` for a layer or table that has no suite.
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    unknown = sorted(set(tables) - set(LAYERS[layer]))
    if unknown:
        raise ValueError(
            f"no suite for {layer} table(s) {', '.join(unknown)}; known: {', '.join(LAYERS[layer])}"
        )

    with _context_lock:
        context = _get_context()
        run = next(_run_numbers)
        # A data source of its own per table: each has its own execution engine, whose batch
        # state two tables validated at the same time must not share.
        sources = {
            table: context.data_sources.add_spark(name=f"engagement_{layer}_{table}_{os.getpid()}_{run}")
            for table in tables
        }
        try:
            batches = [(_batch_definition(sources[table], table), layer, table, df) for table, df in tables.items()]
            validated = _validate_tables(batches)
        finally:
            # Keep the long-lived context from accumulating data sources run after run.
            for source in sources.values():
                context.data_sources.delete(source.name)
        results = [result for result, _ in validated]
        docs = None
        if data_docs is not None:
            try:
                docs = _write_data_docs(context, layer, run_name, [(r.table, outcome) for r, outcome in validated], data_docs)
            except Exception as exc:  # the docs are a view of the verdict, never a reason to change it
                logger.warning("could not write Data Docs to %s: %s", data_docs, exc)

    report = LayerReport(layer=layer, results=results, data_docs=docs)
    # INFO, not ERROR: a failure reaches the operator as QualityGateFailed (whose message lists
    # it); logging it louder would print it twice where no logging is configured (the CLI).
    logger.info("%s", report.summary())
    if raise_on_failure and not report.passed:
        raise QualityGateFailed(report)
    return report


# Internals ------------------------------------------------------------------------------------


def import_great_expectations() -> Any:
    """``great_expectations``, imported with its :data:`CHATTY_LOGGERS` at WARNING unless a level
    was set for them (``engagement --verbose`` shows them)."""
    for name in CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        if chatty.level == logging.NOTSET:
            chatty.setLevel(logging.WARNING)
    import great_expectations

    return great_expectations


def _get_context() -> Any:
    """One ephemeral GX context per process, with progress bars off (they flood task logs)."""
    global _context
    if _context is None:
        gx = import_great_expectations()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _context = context
    return _context


def _write_data_docs(context: Any, layer: str, run_name: str, outcomes: list[tuple[str, Any]], folder) -> str:
    """Render one gate run's results as Data Docs in ``folder``; return the site's index page."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    folder = os.path.abspath(folder)
    site = f"engagement_{abs(hash(folder))}"
    if site not in (context.get_config().data_docs_sites or {}):
        context.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": folder},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    run = RunIdentifier(run_name=f"{layer}-{run_name or 'gate'}")
    keys = []
    for table, outcome in outcomes:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=f"{layer}.{table}"), run_id=run, batch_identifier=table
        )
        context.validation_results_store.set(key, outcome)
        keys.append(key)
    built = context.build_data_docs(site_names=[site], resource_identifiers=keys)
    return built[site].removeprefix("file://")


def _validate_tables(batches: list[tuple[Any, str, str, DataFrame]]) -> list[tuple[TableResult, Any]]:
    """:func:`_validate_table` for each of ``batches``, up to one at a time per core; results in
    order.

    A table's suite is some 20 small Spark jobs, and most of a gate on small tables (gold) is
    the driver JVM planning them: one table at a time keeps one core busy, two keep both (the
    gold gate of a 10M day, warm: 9.2-12.7 s one table at a time, 6.0-8.7 s two at a time).
    """
    workers = min(len(batches), os.cpu_count() or 1)
    if workers <= 1:
        return [_validate_table(*each) for each in batches]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engagement-gate") as pool:
        return list(pool.map(lambda each: _validate_table(*each), batches))


def _batch_definition(source: Any, table: str) -> Any:
    return source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(f"{table}_whole")


def _validate_table(batch_definition: Any, layer: str, table: str, dataframe: DataFrame) -> tuple[TableResult, Any]:
    started = time.monotonic()
    suite = SUITES[(layer, table)]()
    validated = as_validated(dataframe)
    was_cached = validated.is_cached
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": validated})
        # Pass 1 only decides pass/fail: collecting example values costs Spark jobs for every
        # expectation (about half the run time on a clean table), so only pass 2, over just
        # the failed expectations, asks for them.
        outcome = _validate(batch, suite.name, suite.expectations, "BOOLEAN_ONLY")
        failed = [each for each in outcome.results if not each.success]
        if failed:
            failed = _explain(batch, suite.name, failed)
            # The Data Docs show the explained results (counts, examples) of the failures.
            if len(failed) == sum(1 for each in outcome.results if not each.success):
                explained = iter(failed)
                outcome.results = [each if each.success else next(explained) for each in outcome.results]
    finally:
        # GX persists the batch's DataFrame for its many metric passes; release it again.
        if not was_cached:
            validated.unpersist()

    critical: list[str] = []
    warnings: list[str] = []
    # Table-level findings (a missing column) first: they explain the checks that could not run.
    for each in sorted(failed, key=_reading_order):
        message = _describe_failure(each, dataframe.columns)
        (warnings if _severity_of(each.expectation_config) == WARNING else critical).append(message)
    return TableResult(
        layer=layer,
        table=table,
        success=not critical,
        critical_failures=critical,
        warnings=warnings,
        evaluated=len(outcome.results),
        seconds=round(time.monotonic() - started, 3),
    ), outcome


def as_validated(dataframe: DataFrame) -> DataFrame:
    """``dataframe`` as a gate validates it: as one partition when Spark estimates its sources at
    :data:`ONE_PARTITION_AT_MOST` bytes or fewer, else as it is.

    The sources' sizes rather than the table's own estimate: without cost-based optimisation,
    Spark estimates a join (silver's events with their persons) as the product of its sides.
    """
    leaves = dataframe._jdf.queryExecution().optimizedPlan().collectLeaves()
    size = sum(int(str(leaves.apply(i).stats().sizeInBytes())) for i in range(leaves.size()))
    return dataframe.coalesce(1) if size <= ONE_PARTITION_AT_MOST else dataframe


def _explain(batch: Any, suite_name: str, failed: list[Any]) -> list[Any]:
    """Re-run the failed expectations with counts and example values for the messages."""
    expectations = [each.expectation_config.to_domain_obj() for each in failed]
    return list(_validate(batch, f"{suite_name}_failures", expectations, _RESULT_FORMAT).results)


def _validate(batch: Any, suite_name: str, expectations: list[Any], result_format: Any) -> Any:
    """``batch`` validated against ``expectations`` as one suite, one result per expectation (in
    the order GX gives them, which is not the suite's). The kinds in :data:`_SESSION_VIEW_CHECKS`
    run one table at a time."""
    import great_expectations as gx
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    def run(part: list[Any]) -> Any:
        return batch.validate(gx.ExpectationSuite(name=suite_name, expectations=part), result_format=result_format)

    shared = [each for each in expectations if each.expectation_type in _SESSION_VIEW_CHECKS]
    own = [each for each in expectations if each.expectation_type not in _SESSION_VIEW_CHECKS]
    if not shared:
        return run(own)
    with _session_view_lock:
        shared_outcome = run(shared)
    if not own:
        return shared_outcome
    outcome = run(own)
    outcome.results = [*outcome.results, *shared_outcome.results]
    # As GX's own validator reports them: the counts as statistics, the verdict on its own.
    statistics = calc_validation_statistics(outcome.results)._asdict()
    outcome.success = statistics.pop("success")
    outcome.statistics = statistics
    return outcome


def _severity_of(config: Any) -> str:
    """``meta["severity"]`` (the project's contract), else GX's own field; unknown = critical."""
    severity = (config.meta or {}).get("severity")
    if severity is None:
        severity = getattr(config, "severity", None)
        severity = getattr(severity, "value", severity)
    return WARNING if severity == WARNING else CRITICAL


_SUBJECT_KEYS = ("column", "column_A", "column_B", "column_list")
_HIDDEN_KEYS = {"batch_id", "column_set", "unexpected_rows_query", "ignore_row_if", "result_format"}


def _reading_order(result: Any) -> tuple[int, str]:
    kind = result.expectation_config.type
    evaluated = bool(result.result)
    return (0 if kind.startswith("expect_table_") else 1 if evaluated else 2, kind)


def _subject_columns(kwargs: dict[str, Any]) -> list[str]:
    columns: list[str] = []
    for key in _SUBJECT_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            columns.append(value)
        elif isinstance(value, (list, tuple)):
            columns.extend(str(item) for item in value)
    return columns


def _describe_failure(result: Any, table_columns: list[str]) -> str:
    """``<expectation>(<columns>, <parameters>) [<why>]: <what was observed>``."""
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    subject = _subject_columns(kwargs)
    parameters = [
        f"{key}={_condition_text(value) if key == 'row_condition' else _short(value)}"
        for key, value in kwargs.items()
        if key not in _HIDDEN_KEYS and key not in _SUBJECT_KEYS and value is not None
    ]
    head = f"{config.type}({', '.join(subject + parameters)})"
    description = getattr(config, "description", None)
    if description:
        head += f" [{description}]"
    missing = [column for column in subject if column not in table_columns]
    return f"{head}: {_observation(result, missing)}"


def _condition_text(value: Any) -> str:
    """``(platform == wechat AND attempts >= 100)`` rather than the serialised condition."""
    try:
        from great_expectations.expectations.row_conditions import deserialize_row_condition

        return repr(deserialize_row_condition(value))
    except Exception:  # noqa: BLE001 - a message must never fail the gate on its own
        return _short(value)


def _observation(result: Any, missing_columns: list[str]) -> str:
    details = result.result or {}
    if not details:
        # The metric could not be computed: a schema or configuration problem, not bad data.
        # GX's own reason for a missing column is sometimes "list index out of range", so
        # name the missing column when that is the cause.
        if missing_columns:
            return f"could not be evaluated: column(s) {', '.join(missing_columns)} missing"
        reasons = [
            info.get("exception_message")
            for info in (result.exception_info or {}).values()
            if isinstance(info, dict) and info.get("exception_message")
        ]
        if not reasons and (result.exception_info or {}).get("exception_message"):
            reasons = [result.exception_info["exception_message"]]
        return "could not be evaluated: " + ("; ".join(sorted(set(reasons))) or "no result")
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:
        parts = [f"{kind} columns {', '.join(columns)}" for kind, columns in sorted(mismatched.items())]
        return "; ".join(parts)
    if "unexpected_count" in details:
        count = details["unexpected_count"]
        total = details.get("element_count")
        percent = details.get("unexpected_percent")
        text = f"{count} unexpected of {total} rows" if total is not None else f"{count} unexpected rows"
        if percent is not None:
            text += f" ({percent:.1f}%)"
        examples = details.get("partial_unexpected_list") or []
        if examples:
            text += f", e.g. {_short(examples[:_EXAMPLES])}"
        return text
    if "observed_value" in details:
        observed = details["observed_value"]
        # UnexpectedRowsExpectation reports the number of offending rows as observed_value.
        if result.expectation_config.type == "unexpected_rows_expectation":
            return f"{observed} offending rows"
        return f"observed {_short(observed)}"
    return _short(details)


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        text = "[" + ", ".join(value) + "]"
    return text if len(text) <= limit else text[: limit - 3] + "..."
