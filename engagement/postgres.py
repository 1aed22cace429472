"""Mirror the published gold tables into PostgreSQL, for deployments that have one.

PostgreSQL shows what ``engagement query`` shows: schema ``gold`` has one table per gold table.
Tables without an ``as_of_date`` column hold the latest published run (each run recomputes the
whole corrected history); ``group_health`` and ``cross_platform_overlap`` keep every published
snapshot. ``gold._publications`` records which dates were mirrored, so a backfill of an older
date adds its snapshots without overwriting the history tables with older numbers.

The URL (``ENGAGEMENT_POSTGRES_URL``) holds a password: it never appears in a message. Analysts
log in as a read-only role (``ENGAGEMENT_POSTGRES_ANALYST_ROLE``, ``analyst`` by default, its
password from ``ENGAGEMENT_POSTGRES_ANALYST_PASSWORD``) that can read schema ``gold`` and
nothing else.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

from core import tables
from core.errors import UserError
from core.storage import Store
from core.tables import GOLD_TABLES

log = logging.getLogger("engagement.postgres")

SCHEMA = "gold"


class PostgresPublishError(UserError):
    """Publishing to PostgreSQL failed; the message says what to check (never the password)."""


POSTGRES_TYPES = {
    "string": "text",
    "int": "integer",
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
    "binary": "bytea",
}


def create_table_sql(table: tables.Table):
    """``CREATE TABLE gold.<name> (...)`` from the table's definition in ``core.tables``."""
    from psycopg import sql

    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(column.name),
            sql.SQL(POSTGRES_TYPES[column.type]),
            sql.SQL("" if column.nullable else " NOT NULL"),
        )
        for column in table.columns
    )
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(SCHEMA, table.name), columns)


def publish_to_postgres(
    url: str,
    warehouse: Path | Store,
    as_of_date: date,
    *,
    analyst_role: str = "",
    analyst_password: str | None = None,
) -> dict[str, int]:
    """Mirror the gold tables published for ``as_of_date`` into PostgreSQL, in one transaction.

    Snapshot tables: the rows of ``as_of_date`` are replaced. History tables: all rows are
    replaced, but only when ``as_of_date`` is not older than the latest date already mirrored.
    With ``analyst_role``, that role exists afterwards and may read the gold schema and nothing
    else (:func:`_grant_analyst`). Returns the rows loaded per table (history tables skipped by
    a backfill are left out).
    """
    gold = _read_published_gold(warehouse, as_of_date)
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:  # pragma: no cover - the dependency is in pyproject.toml
        raise PostgresPublishError("psycopg is not installed: run `make env`") from exc

    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        # `from None`: the driver's own exception may quote a malformed URL, password included.
        raise PostgresPublishError(
            f"could not connect to PostgreSQL at {_describe_target(url)} (ENGAGEMENT_POSTGRES_URL): "
            f"check the host, port and database name in the URL and that the server is running "
            f"and accepts this user. Driver said: {_scrub(str(exc), url)}"
        ) from None

    loaded: dict[str, int] = {}
    try:
        with conn.transaction(), conn.cursor() as cur:
            # Naive timestamps from Spark are UTC instants.
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}._publications ("
                    "as_of_date date PRIMARY KEY, published_at timestamptz NOT NULL, row_counts jsonb NOT NULL)"
                ).format(sql.Identifier(SCHEMA))
            )
            # One publisher at a time: the "latest date" check below must not race another run.
            cur.execute(sql.SQL("LOCK TABLE {}._publications IN EXCLUSIVE MODE").format(sql.Identifier(SCHEMA)))
            cur.execute(sql.SQL("SELECT max(as_of_date) FROM {}._publications").format(sql.Identifier(SCHEMA)))
            latest = cur.fetchone()[0]
            replace_history = latest is None or as_of_date >= latest
            if not replace_history:
                log.info("%s is older than %s, already in PostgreSQL: history tables left as they are", as_of_date, latest)

            for name, table in gold.items():
                target = sql.Identifier(SCHEMA, name)
                definition = tables.GOLD[name]
                _ensure_table(cur, definition)
                if definition.is_snapshot:
                    cur.execute(sql.SQL("DELETE FROM {} WHERE as_of_date = %s").format(target), (as_of_date,))
                elif replace_history:
                    # DELETE, not TRUNCATE: TRUNCATE's lock would block analysts' reads.
                    cur.execute(sql.SQL("DELETE FROM {}").format(target))
                else:
                    continue
                columns = sql.SQL(", ").join(sql.Identifier(c) for c in definition.column_names)
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, columns)) as copy:
                    for row in zip(*(table.column(c).to_pylist() for c in definition.column_names)):
                        copy.write_row(row)
                loaded[name] = table.num_rows
            if analyst_role:
                _grant_analyst(cur, analyst_role, analyst_password)

            cur.execute(
                sql.SQL(
                    "INSERT INTO {}._publications (as_of_date, published_at, row_counts) VALUES (%s, now(), %s) "
                    "ON CONFLICT (as_of_date) DO UPDATE SET published_at = EXCLUDED.published_at, "
                    "row_counts = EXCLUDED.row_counts"
                ).format(sql.Identifier(SCHEMA)),
                (as_of_date, json.dumps({name: table.num_rows for name, table in gold.items()})),
            )
    except psycopg.Error as exc:
        raise PostgresPublishError(
            f"publishing gold for {as_of_date} to PostgreSQL at {_describe_target(url)} failed and was "
            f"rolled back (nothing changed): {_scrub(str(exc), url)}"
        ) from None
    finally:
        conn.close()
    log.info("gold for %s mirrored to PostgreSQL: %s", as_of_date, loaded)
    return loaded


def _grant_analyst(cur, role: str, password: str | None) -> None:
    """Make ``role`` a login that reads the gold schema and nothing else.

    It gets USAGE on the schema and SELECT on its tables (now and those created later), no other
    privilege; its sessions start read-only as a second guard. Other schemas stay closed to it
    (PostgreSQL 15 and later give PUBLIC no CREATE on ``public``; nothing here grants more).
    Creating the role needs CREATEROLE; without it, a role created beforehand by an
    administrator works the same.
    """
    import psycopg
    from psycopg import sql

    who = sql.Identifier(role)
    schema = sql.Identifier(SCHEMA)
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    exists = cur.fetchone() is not None
    cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    manages_roles = bool(cur.fetchone()[0])
    try:
        if not exists:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(who))
        if manages_roles or not exists:
            if password:
                # Composed on the client: utility statements take no bound parameters.
                cur.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(who, sql.Literal(password)))
            cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(who))
        else:
            log.info("analyst role %s exists and this user may not alter roles: only granting it gold", role)
    except psycopg.errors.InsufficientPrivilege:
        raise PostgresPublishError(
            f"the PostgreSQL user of ENGAGEMENT_POSTGRES_URL may not create or alter the analyst role {role!r}: "
            f"grant it CREATEROLE, or create the role yourself (CREATE ROLE {role} LOGIN PASSWORD '...'), "
            "or set ENGAGEMENT_POSTGRES_ANALYST_ROLE= (empty) to mirror without one; nothing was published"
        ) from None
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, who))
    cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, who))
    cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(schema, who))


def _read_published_gold(warehouse: Path | Store, as_of_date: date):
    """Every gold table published for ``as_of_date``, as Arrow tables."""
    from engagement.publish import publication, read_published

    if publication(warehouse, as_of_date) is None:
        raise PostgresPublishError(f"gold for {as_of_date} is not published: run `engagement run --as-of {as_of_date}` first")
    return {name: read_published(warehouse, name, as_of_date) for name in GOLD_TABLES}


def _ensure_table(cur, table: tables.Table) -> None:
    """Create ``gold.<name>`` from its definition, or check an existing one has the same columns."""
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (SCHEMA, table.name),
    )
    existing = [row[0] for row in cur.fetchall()]
    if not existing:
        cur.execute(create_table_sql(table))
    elif existing != list(table.column_names):
        raise PostgresPublishError(
            f"{SCHEMA}.{table.name} in PostgreSQL has columns {existing}, the gold table has "
            f"{list(table.column_names)}: the gold schema changed; drop {SCHEMA}.{table.name} and re-publish "
            f"(snapshot tables need every date re-published)"
        )


def _describe_target(url: str) -> str:
    """``host:port/database`` of a connection URL, without user or password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # a malformed URL: say so without quoting it
        return "<unparseable URL>"
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '<default database>')}"


def _scrub(message: str, url: str) -> str:
    """``message`` with the URL and its password blanked out."""
    from psycopg.conninfo import conninfo_to_dict

    secrets = [url]
    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:
        password = None
    if password:
        secrets.append(str(password))
    for secret in secrets:
        message = message.replace(secret, "***")
    return message.strip()
