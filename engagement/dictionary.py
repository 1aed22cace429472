"""The data dictionary: every table and column with its type, key and meaning (DESIGN section 6).

Rendered from ``core.tables``, the schema every part of the pipeline reads, so it cannot drift
from the code: ``engagement tables`` prints it, and ``docs/tables.md`` is the same text written
by ``engagement tables --format markdown`` (``make docs``); a test fails when that file is stale.
"""

from __future__ import annotations

from core import tables
from core.errors import UserError
from core.tables import Table

# Where each layer's tables are read, for the heading of its section.
_LAYER_NOTES = {
    "bronze": "What arrived, as it arrived, with its Kafka coordinates (written by the loader).",
    "silver": "Typed, deduplicated events and resolved identities (built by the daily run).",
    "gold": "What analysts query: `engagement query`, the PostgreSQL mirror's gold schema, the report.",
    "ops": "How the pipeline itself is doing: one row per daily run.",
}


def all_tables() -> list[Table]:
    """Every table, layer by layer, in the order the pipeline writes them."""
    return [
        tables.BRONZE_EVENTS,
        tables.BRONZE_IDENTITY,
        tables.QUARANTINE,
        *tables.SILVER.values(),
        *tables.GOLD.values(),
        tables.PIPELINE_RUNS,
    ]


def qualified_name(table: Table) -> str:
    """``layer.name``; the quarantine is one of a kind and needs no layer."""
    return table.name if table.name == tables.QUARANTINE.name else f"{table.layer}.{table.name}"


def find(name: str) -> list[Table]:
    """The tables called ``name``: a qualified name (``silver.events``) or a bare one (``events``
    names bronze's and silver's). Raises :class:`UserError` listing the names when none is."""
    found = [t for t in all_tables() if name in (qualified_name(t), t.name)]
    if not found:
        names = ", ".join(qualified_name(t) for t in all_tables())
        raise UserError(f"no table {name!r}; the tables are: {names}")
    return found


def describe(table: Table) -> dict:
    """One table as plain data (``--format json``)."""
    return {
        "table": qualified_name(table),
        "layer": table.layer,
        "meaning": table.meaning,
        "key": list(table.key),
        "columns": [
            {"name": c.name, "type": c.type, "nullable": c.nullable, "key": c.name in table.key, "meaning": c.meaning}
            for c in table.columns
        ],
    }


def render_text(selected: list[Table]) -> str:
    """Plain text for a terminal: one block per table, columns aligned."""
    blocks = []
    for table in selected:
        width_name = max(len(c.name) for c in table.columns)
        width_type = max(len(c.type) for c in table.columns)
        lines = [f"{qualified_name(table)}: {table.meaning}", f"  key: {', '.join(table.key) or '-'}"]
        for c in table.columns:
            flags = ("key" if c.name in table.key else "") + (" null" if c.nullable else "")
            lines.append(f"  {c.name:<{width_name}}  {c.type:<{width_type}}  {flags.strip():<8}  {c.meaning}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_summary() -> str:
    """One line per table (``engagement tables`` without a name)."""
    width = max(len(qualified_name(t)) for t in all_tables())
    lines = [f"{qualified_name(t):<{width}}  {t.meaning}" for t in all_tables()]
    lines.append("\n`engagement tables NAME` shows a table's columns; --format json or markdown for all of them.")
    return "\n".join(lines)


def render_markdown() -> str:
    """The whole dictionary as Markdown: the content of ``docs/tables.md``."""
    out = [
        "# Data dictionary",
        "",
        "<!-- Generated from core/tables.py by `engagement tables --format markdown` (make docs). "
        "Do not edit: a test fails when this file is stale. -->",
        "",
        "Dates are calendar dates in the reporting time zone (`ENGAGEMENT_TIMEZONE`, Asia/Shanghai by",
        "default); timestamps are UTC. A column marked *null* may be NULL; every other column never is,",
        "and the quality gate of its layer checks that. Gold rows whose window is not yet over at",
        "`as_of_date` are not emitted (DESIGN section 5).",
    ]
    for layer in ("bronze", "silver", "gold", "ops"):
        out += ["", f"## {layer.capitalize()}", "", _LAYER_NOTES[layer]]
        for table in (t for t in all_tables() if t.layer == layer):
            out += [
                "",
                f"### `{qualified_name(table)}`",
                "",
                f"{table.meaning[0].upper()}{table.meaning[1:]}. Key: {', '.join(f'`{k}`' for k in table.key) or 'none'}.",
                "",
                "| column | type | | meaning |",
                "|---|---|---|---|",
            ]
            for c in table.columns:
                flags = ", ".join(f for f, on in (("key", c.name in table.key), ("null", c.nullable)) if on)
                out.append(f"| `{c.name}` | {c.type} | {flags} | {c.meaning.replace('|', '/')} |")
    return "\n".join(out) + "\n"
