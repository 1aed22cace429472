"""The eight gold tables of DESIGN section 5, computed independently in DuckDB SQL.

A reference implementation for the benchmark (``bench/pipeline_bench.py``): it reads the
committed bronze Parquet files directly (events and identity links), applies the event contract
of DESIGN section 3, deduplicates redeliveries, resolves persons, and computes every gold table
as of one date in one reporting time zone (section 4), with set-based SQL only. It shares no
code with the Spark jobs (``jobs/``, ``engagement/``): only duckdb, pyarrow and the standard
library are used, so that agreement between the two is evidence that both follow the contract.

    .venv/bin/python bench/duckdb_gold.py WAREHOUSE_DIR AS_OF_DATE [--timezone Asia/Shanghai]

DUCKDB_GOLD_THREADS=N limits DuckDB to N threads (default: one per core).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import sys
import time

import duckdb
import pyarrow as pa

GOLD_TABLES = (
    "daily_engagement",
    "join_conversion",
    "retention_cohorts",
    "member_lifetime",
    "group_health",
    "group_survival",
    "cross_platform_propagation",
    "cross_platform_overlap",
)

# DESIGN section 3.
KUAISHOU_TOPIC = "engagement.kuaishou.events"
WECHAT_TOPIC = "engagement.wechat.events"
CHANNELS = ("invite", "qr_code", "content", "live_stream", "official_account", "mini_program", "search", "other")
# RFC 3339 date-time with an explicit offset ("Z" or +hh:mm), fraction of any length.
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"

RETENTION_OFFSETS = (1, 7, 14, 30)


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _id_ok(col: str, *, required: bool) -> str:
    """SQL: a string id is 1-128 characters (or NULL when optional)."""
    return f"length({col}) BETWEEN 1 AND 128" if required else f"length(coalesce({col}, 'x')) BETWEEN 1 AND 128"


def _ts_sql(col: str) -> str:
    """SQL: an RFC 3339 string with an explicit offset as TIMESTAMPTZ (NULL when not one)."""
    return f"CASE WHEN regexp_full_match({col}, '{RFC3339}') THEN try_cast(upper({col}) AS TIMESTAMPTZ) END"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Instants are compared as instants; dates are always taken explicitly in the reporting zone.
    con.execute("SET TimeZone = 'UTC'")
    # Row order only matters in the results, which are sorted explicitly.
    con.execute("SET preserve_insertion_order = false")
    threads = os.environ.get("DUCKDB_GOLD_THREADS")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _persons(con: duckdb.DuckDBPyConnection) -> None:
    """Connected components over accounts (DESIGN section 3): creates ``person_map``.

    Nodes are accounts (Kuaishou user id, WeChat OpenID, WeChat UnionID), numbered in SQL; each
    link joins its Kuaishou id and OpenID, and its OpenID and UnionID when there is one. The
    components come from a union-find over the integer edges (links are few next to events).
    ``person_map`` has (platform, user_id, person_id, has_wechat) for every account in a link;
    an account in no link is its own person (handled where persons are used). ``has_wechat``
    says the person has at least one linked WeChat account.
    """
    con.execute(
        """
        CREATE TEMP TABLE nodes AS
        SELECT kind, account, CAST(row_number() OVER () - 1 AS BIGINT) AS node FROM (
            SELECT DISTINCT 'kuaishou' AS kind, kuaishou_user_id AS account FROM links
            UNION SELECT DISTINCT 'wechat', wechat_openid FROM links
            UNION SELECT DISTINCT 'wechat_unionid', wechat_unionid FROM links WHERE wechat_unionid IS NOT NULL
        )
        """
    )
    n = con.execute("SELECT count(*) FROM nodes").fetchall()[0][0]
    edges = con.execute(
        """
        WITH e AS (
            SELECT l.kuaishou_user_id AS a_account, 'kuaishou' AS a_kind, l.wechat_openid AS b_account, 'wechat' AS b_kind
            FROM links l
            UNION ALL
            SELECT wechat_openid, 'wechat', wechat_unionid, 'wechat_unionid' FROM links WHERE wechat_unionid IS NOT NULL
        )
        SELECT list(a.node), list(b.node) FROM e
        JOIN nodes a ON a.kind = e.a_kind AND a.account = e.a_account
        JOIN nodes b ON b.kind = e.b_kind AND b.account = e.b_account
        """
    ).fetchall()[0]
    parent = list(range(n))
    for a, b in zip(edges[0] or (), edges[1] or ()):
        # find with path halving, then link the larger root under the smaller
        while parent[a] != a:
            parent[a] = a = parent[parent[a]]
        while parent[b] != b:
            parent[b] = b = parent[parent[b]]
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    roots = []
    for x in range(n):
        r = x
        while parent[r] != r:
            r = parent[r]
        parent[x] = r
        roots.append(r)
    con.register("node_roots", pa.table({"node": pa.array(range(n), pa.int64()), "root": pa.array(roots, pa.int64())}))
    con.execute(
        """
        CREATE TEMP TABLE person_map AS
        WITH r AS (SELECT n.kind, n.account, nr.root FROM nodes n JOIN node_roots nr USING (node))
        SELECT kind AS platform, account AS user_id, root AS person_id,
               bool_or(kind = 'wechat') OVER (PARTITION BY root) AS has_wechat
        FROM r
        QUALIFY kind <> 'wechat_unionid'
        """
    )
    con.unregister("node_roots")


def _load(con, event_files: list[str], link_files: list[str], as_of: dt.date, tz: str) -> None:
    """Silver, in DuckDB: ``ev`` (valid, deduplicated events of dates <= as_of, with their
    instant in microseconds ``us`` and ``event_date``) and ``person_map`` (from the links)."""
    ks, wc = _sql_list([KUAISHOU_TOPIC]), _sql_list([WECHAT_TOPIC])
    channels = _sql_list(CHANNELS)
    tz_sql = tz.replace("'", "''")

    if event_files:
        con.execute(
            f"""
            CREATE TEMP TABLE valid_events AS
            SELECT * FROM (
                SELECT event_id, event_type, platform, user_id, content_id, group_id, channel,
                       inviter_user_id, kafka_topic, kafka_partition, kafka_offset,
                       hash(event_id) AS h, {_ts_sql('event_time')} AS ts
                FROM read_parquet(?, union_by_name = true)
                WHERE schema_version = 1
                  -- platform known and matching the topic it arrived on
                  AND platform = CASE kafka_topic WHEN {ks} THEN 'kuaishou' WHEN {wc} THEN 'wechat' END
                  -- event_type known, with the fields it requires
                  AND CASE event_type
                        WHEN 'like' THEN content_id IS NOT NULL
                        WHEN 'share' THEN content_id IS NOT NULL AND target_platform IS NOT NULL
                        WHEN 'join' THEN group_id IS NOT NULL AND channel IS NOT NULL
                        ELSE false END
                  AND {_id_ok('event_id', required=True)}
                  AND {_id_ok('user_id', required=True)}
                  AND {_id_ok('content_id', required=False)}
                  AND {_id_ok('group_id', required=False)}
                  AND {_id_ok('inviter_user_id', required=False)}
                  AND coalesce(channel IN ({channels}), true)
                  AND coalesce(target_platform IN ('kuaishou', 'wechat'), true)
            )
            WHERE ts IS NOT NULL
            """,
            [event_files],
        )
    else:
        con.execute(
            """CREATE TEMP TABLE valid_events (event_id VARCHAR, event_type VARCHAR, platform VARCHAR,
               user_id VARCHAR, content_id VARCHAR, group_id VARCHAR, channel VARCHAR,
               inviter_user_id VARCHAR, kafka_topic VARCHAR, kafka_partition INTEGER,
               kafka_offset BIGINT, h UBIGINT, ts TIMESTAMPTZ)"""
        )

    if link_files:
        con.execute(
            f"""
            CREATE TEMP TABLE links AS
            SELECT kuaishou_user_id, wechat_openid, wechat_unionid FROM (
                SELECT *, {_ts_sql('linked_at')} AS linked_ts FROM read_parquet(?, union_by_name = true)
                WHERE {_id_ok('link_id', required=True)}
                  AND {_id_ok('kuaishou_user_id', required=True)}
                  AND {_id_ok('wechat_openid', required=True)}
                  AND {_id_ok('wechat_unionid', required=False)}
            )
            WHERE linked_ts IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY link_id ORDER BY kafka_topic, kafka_partition, kafka_offset) = 1
            """,
            [link_files],
        )
    else:
        con.execute("CREATE TEMP TABLE links (kuaishou_user_id VARCHAR, wechat_openid VARCHAR, wechat_unionid VARCHAR)")

    _persons(con)

    # Deduplicate: a repeated event_id is a redelivery, and the copy at the smallest Kafka
    # position counts. Redeliveries are rare, so only rows whose id hash occurs more than once
    # go through the (exact, by event_id) window; all others are unique by construction. Then
    # take the date in the reporting zone and keep dates <= as_of.
    dated = f"""epoch_us(ts) AS us, CAST(timezone('{tz_sql}', ts) AS DATE) AS event_date"""
    cols = "event_id, event_type, platform, user_id, content_id, group_id, channel, inviter_user_id"
    con.execute(
        f"""
        CREATE TEMP TABLE ev AS
        WITH dup AS (SELECT h FROM valid_events GROUP BY h HAVING count(*) > 1)
        SELECT * FROM (
            SELECT {cols}, {dated} FROM valid_events ANTI JOIN dup USING (h)
            UNION ALL
            SELECT {cols}, {dated} FROM (
                SELECT * FROM valid_events SEMI JOIN dup USING (h)
                QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY kafka_topic, kafka_partition, kafka_offset) = 1
            )
        )
        WHERE event_date <= DATE '{as_of.isoformat()}'
        """
    )
    con.execute("DROP TABLE valid_events")


DAY_US = 86_400_000_000


def _queries(as_of: dt.date) -> dict[str, str]:
    d = f"DATE '{as_of.isoformat()}'"
    offsets = ", ".join(f"({n})" for n in RETENTION_OFFSETS)
    return {
        "daily_engagement": """
            SELECT platform, event_date, event_type,
                   count(*) AS events, count(DISTINCT user_id) AS users
            FROM ev
            GROUP BY ALL
        """,
        "join_conversion": f"""
            WITH inv AS (          -- invitations: shares naming a group
                SELECT platform, group_id, user_id, us, event_id, event_date FROM ev
                WHERE event_type = 'share' AND group_id IS NOT NULL
            ), inv_key AS (        -- one invitation per (inviter, group, instant): the smallest event_id
                SELECT platform, group_id, user_id, us, min(event_id) AS event_id FROM inv GROUP BY ALL
            ), joins AS (
                SELECT platform, group_id, inviter_user_id, us FROM ev
                WHERE event_type = 'join' AND inviter_user_id IS NOT NULL
            ), attributed AS (     -- each join -> the inviter's latest invitation at or before it
                SELECT DISTINCT k.event_id
                FROM joins j ASOF JOIN inv_key k
                  ON j.platform = k.platform AND j.group_id = k.group_id
                 AND j.inviter_user_id = k.user_id AND j.us >= k.us
                WHERE j.us - k.us <= {DAY_US * 7}
            ), invite_rows AS (
                SELECT i.platform, i.event_date AS cohort_date, 'invite' AS funnel,
                       count(*) AS attempts, count(a.event_id) AS conversions
                FROM inv i LEFT JOIN attributed a ON a.event_id = i.event_id
                GROUP BY ALL
            ), first_like AS (     -- content funnel: first like per user, group and day
                SELECT platform, user_id, group_id, event_date, min(us) AS us FROM ev
                WHERE event_type = 'like' AND group_id IS NOT NULL
                GROUP BY ALL
            ), first_join AS (
                SELECT platform, user_id, group_id, min(us) AS us FROM ev
                WHERE event_type = 'join'
                GROUP BY ALL
            ), content_rows AS (
                SELECT l.platform, l.event_date AS cohort_date, 'content' AS funnel,
                       count(*) AS attempts,
                       count(*) FILTER (WHERE j.us IS NOT NULL AND j.us <= l.us + {DAY_US * 7}) AS conversions
                FROM first_like l
                LEFT JOIN first_join j ON j.platform = l.platform AND j.user_id = l.user_id AND j.group_id = l.group_id
                WHERE j.us IS NULL OR j.us >= l.us          -- had not joined before the first like
                GROUP BY ALL
            )
            SELECT platform, cohort_date, funnel, attempts, conversions,
                   CASE WHEN attempts > 0 THEN conversions / attempts END AS conversion_rate
            FROM (SELECT * FROM invite_rows UNION ALL SELECT * FROM content_rows)
            WHERE cohort_date + 7 <= {d}
        """,
        "retention_cohorts": f"""
            WITH cohorts AS (
                SELECT platform, user_id, min(event_date) AS cohort_date FROM ev
                WHERE event_type = 'join' GROUP BY ALL
            ), active AS (
                SELECT DISTINCT platform, user_id, event_date FROM ev
            ), offs(day_offset) AS (VALUES {offsets})
            SELECT c.platform, c.cohort_date, CAST(o.day_offset AS INTEGER) AS day_offset,
                   count(*) AS cohort_users, count(a.user_id) AS retained_users,
                   count(a.user_id) / count(*) AS retention_rate
            FROM cohorts c CROSS JOIN offs o
            LEFT JOIN active a ON a.platform = c.platform AND a.user_id = c.user_id
                              AND a.event_date = c.cohort_date + o.day_offset
            WHERE c.cohort_date + o.day_offset <= {d}
            GROUP BY ALL
        """,
        "member_lifetime": """
            WITH per_user AS (
                SELECT platform, user_id,
                       min(event_date) FILTER (WHERE event_type = 'join') AS cohort_date,
                       max(event_date) AS last_date
                FROM ev GROUP BY ALL
            )
            SELECT platform, CAST(date_trunc('month', cohort_date) AS DATE) AS cohort_month,
                   count(*) AS users,
                   avg(last_date - cohort_date)::DOUBLE AS avg_lifetime_days,
                   quantile_cont(last_date - cohort_date, 0.5)::DOUBLE AS median_lifetime_days
            FROM per_user WHERE cohort_date IS NOT NULL
            GROUP BY ALL
        """,
        "group_health": f"""
            WITH scoped AS (       -- group-scoped events: joins, likes and shares naming the group
                SELECT platform, group_id, event_type, user_id, channel, us, event_id, event_date
                FROM ev WHERE group_id IS NOT NULL
            ), origin AS (
                SELECT platform, group_id, arg_min(channel, (us, event_id)) AS origin_channel
                FROM scoped WHERE event_type = 'join' GROUP BY ALL
            ), span AS (
                SELECT platform, group_id, min(event_date) AS first_event_date, max(event_date) AS last_event_date
                FROM scoped GROUP BY ALL
            ), last_seen AS (      -- a user's last event on the platform (any event)
                SELECT platform, user_id, max(event_date) AS last_date FROM ev GROUP BY ALL
            ), members AS (
                SELECT m.platform, m.group_id,
                       count(*) AS members,
                       count(*) FILTER (WHERE s.last_date >= {d} - 6) AS active_members_7d,
                       count(*) FILTER (WHERE s.last_date < {d} - 6) AS silent_members_7d,
                       count(*) FILTER (WHERE s.last_date < {d} - 13) AS inactive_members_14d
                FROM (SELECT DISTINCT platform, group_id, user_id FROM scoped WHERE event_type = 'join') m
                JOIN last_seen s ON s.platform = m.platform AND s.user_id = m.user_id
                GROUP BY ALL
            ), late AS (           -- groups with a scoped event on or after first_event_date + 30
                SELECT DISTINCT s.platform, s.group_id
                FROM scoped s JOIN span p ON p.platform = s.platform AND p.group_id = s.group_id
                WHERE s.event_date >= p.first_event_date + 30
            )
            SELECT p.platform, p.group_id, {d} AS as_of_date, o.origin_channel,
                   p.first_event_date, p.last_event_date,
                   coalesce(m.members, 0) AS members,
                   coalesce(m.active_members_7d, 0) AS active_members_7d,
                   coalesce(m.silent_members_7d, 0) AS silent_members_7d,
                   coalesce(m.inactive_members_14d, 0) AS inactive_members_14d,
                   CASE WHEN {d} < p.first_event_date + 30 THEN NULL
                        ELSE l.group_id IS NOT NULL END AS alive_30d
            FROM span p
            LEFT JOIN origin o USING (platform, group_id)
            LEFT JOIN members m USING (platform, group_id)
            LEFT JOIN late l USING (platform, group_id)
        """,
        "group_survival": """
            SELECT platform, origin_channel,
                   CAST(date_trunc('month', first_event_date) AS DATE) AS cohort_month,
                   count(*) AS groups,
                   count(*) FILTER (WHERE alive_30d) AS survived_30d,
                   count(*) FILTER (WHERE alive_30d) / count(*) AS survival_rate_30d
            FROM group_health WHERE alive_30d IS NOT NULL
            GROUP BY ALL
        """,
        "cross_platform_propagation": f"""
            WITH likes AS (        -- Kuaishou likes by persons with a linked WeChat account
                SELECT p.person_id, e.content_id, e.us, e.event_date
                FROM ev e JOIN person_map p ON p.platform = e.platform AND p.user_id = e.user_id
                WHERE e.platform = 'kuaishou' AND e.event_type = 'like' AND p.has_wechat
                  AND e.event_date + 1 <= {d}
            ), shares AS (         -- WeChat shares by linked persons (no other can match a like above)
                SELECT DISTINCT p.person_id, e.content_id, e.us
                FROM ev e JOIN person_map p ON p.platform = e.platform AND p.user_id = e.user_id
                WHERE e.platform = 'wechat' AND e.event_type = 'share'
            ), matched AS (        -- the earliest WeChat share of the same content at or after the like
                SELECT l.event_date,
                       CASE WHEN s.us - l.us <= {DAY_US} THEN (s.us - l.us) / 1e6 END AS latency
                FROM likes l ASOF LEFT JOIN shares s
                  ON l.person_id = s.person_id AND l.content_id = s.content_id AND s.us >= l.us
            )
            SELECT event_date, count(*) AS likes, count(latency) AS propagated,
                   count(latency) / count(*) AS propagation_rate,
                   quantile_cont(latency, 0.5) AS latency_p50_s,
                   quantile_cont(latency, 0.9) AS latency_p90_s,
                   quantile_cont(latency, 0.99) AS latency_p99_s
            FROM matched GROUP BY ALL
        """,
        "cross_platform_overlap": f"""
            WITH accounts AS (     -- accounts that joined a group; an unlinked one is its own person
                SELECT DISTINCT platform, user_id FROM ev WHERE event_type = 'join'
            ), joined AS (
                SELECT coalesce(CAST(p.person_id AS VARCHAR), a.platform || ':' || a.user_id) AS person_id,
                       bool_or(a.platform = 'kuaishou') AS k, bool_or(a.platform = 'wechat') AS w
                FROM accounts a LEFT JOIN person_map p ON p.platform = a.platform AND p.user_id = a.user_id
                GROUP BY ALL
            )
            SELECT {d} AS as_of_date,
                   count(*) FILTER (WHERE k) AS kuaishou_members,
                   count(*) FILTER (WHERE w) AS wechat_members,
                   count(*) FILTER (WHERE k AND w) AS both,
                   CASE WHEN count(*) > 0 THEN count(*) FILTER (WHERE k AND w) / count(*) END AS overlap_rate
            FROM joined
        """,
    }


# Column order and Arrow types of the published gold (DESIGN section 5).
SCHEMAS = {
    "daily_engagement": [("platform", pa.string()), ("event_date", pa.date32()), ("event_type", pa.string()),
                         ("events", pa.int64()), ("users", pa.int64())],
    "join_conversion": [("platform", pa.string()), ("cohort_date", pa.date32()), ("funnel", pa.string()),
                        ("attempts", pa.int64()), ("conversions", pa.int64()), ("conversion_rate", pa.float64())],
    "retention_cohorts": [("platform", pa.string()), ("cohort_date", pa.date32()), ("day_offset", pa.int32()),
                          ("cohort_users", pa.int64()), ("retained_users", pa.int64()),
                          ("retention_rate", pa.float64())],
    "member_lifetime": [("platform", pa.string()), ("cohort_month", pa.date32()), ("users", pa.int64()),
                        ("avg_lifetime_days", pa.float64()), ("median_lifetime_days", pa.float64())],
    "group_health": [("platform", pa.string()), ("group_id", pa.string()), ("as_of_date", pa.date32()),
                     ("origin_channel", pa.string()), ("first_event_date", pa.date32()),
                     ("last_event_date", pa.date32()), ("members", pa.int64()), ("active_members_7d", pa.int64()),
                     ("silent_members_7d", pa.int64()), ("inactive_members_14d", pa.int64()),
                     ("alive_30d", pa.bool_())],
    "group_survival": [("platform", pa.string()), ("origin_channel", pa.string()), ("cohort_month", pa.date32()),
                       ("groups", pa.int64()), ("survived_30d", pa.int64()), ("survival_rate_30d", pa.float64())],
    "cross_platform_propagation": [("event_date", pa.date32()), ("likes", pa.int64()), ("propagated", pa.int64()),
                                   ("propagation_rate", pa.float64()), ("latency_p50_s", pa.float64()),
                                   ("latency_p90_s", pa.float64()), ("latency_p99_s", pa.float64())],
    "cross_platform_overlap": [("as_of_date", pa.date32()), ("kuaishou_members", pa.int64()),
                               ("wechat_members", pa.int64()), ("both", pa.int64()), ("overlap_rate", pa.float64())],
}


def gold_tables(
    event_files: list[str], link_files: list[str], *, as_of: dt.date, timezone: str
) -> dict[str, pa.Table]:
    """The eight gold tables as of ``as_of`` (reporting zone ``timezone``), from bronze files."""
    con = _connect()
    try:
        _load(con, list(event_files), list(link_files), as_of, timezone)
        out = {}
        queries = _queries(as_of)
        for name in GOLD_TABLES:
            con.execute(f"CREATE TEMP TABLE {name} AS {queries[name]}")
            cols = SCHEMAS[name]
            select = ", ".join(f'"{c}"' for c, _ in cols)
            rel = con.sql(f"SELECT {select} FROM {name} ORDER BY ALL")
            table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
            out[name] = table.cast(pa.schema(cols))
        return out
    finally:
        con.close()


_DATA_FILE = re.compile(r"^(\d{20})-(\d{20})\.parquet$")


def committed_files(warehouse: str, table: str) -> list[str]:
    """The data files of a bronze table in committed offset ranges (the loader's ``_commits`` log);
    a partition without a commit log falls back to every data file it holds."""
    out = []
    for part in sorted(glob.glob(os.path.join(warehouse, "bronze", table, "topic=*", "partition=*"))):
        names = {n for n in os.listdir(part) if _DATA_FILE.match(n)}
        commits_dir = os.path.join(part, "_commits")
        if not os.path.isdir(commits_dir):
            out.extend(os.path.join(part, n) for n in sorted(names))
            continue
        for c in sorted(os.listdir(commits_dir)):
            if not c.endswith(".json") or c.startswith("."):
                continue
            with open(os.path.join(commits_dir, c), "rb") as fh:
                rec = json.load(fh)
            name = f"{int(rec['first']):020d}-{int(rec['last']):020d}.parquet"
            if int(rec.get("bronze_rows", 1)) and name in names:
                out.append(os.path.join(part, name))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("warehouse")
    ap.add_argument("as_of", type=dt.date.fromisoformat)
    ap.add_argument("--timezone", default="Asia/Shanghai")
    args = ap.parse_args(argv)
    events = committed_files(args.warehouse, "events")
    links = committed_files(args.warehouse, "identity")
    if not events:
        print(f"no committed bronze event files under {args.warehouse}/bronze/events", file=sys.stderr)
        return 1
    started = time.monotonic()
    tables = gold_tables(events, links, as_of=args.as_of, timezone=args.timezone)
    seconds = time.monotonic() - started
    print(f"duckdb {duckdb.__version__}: {len(events)} event files, {len(links)} link files, as of {args.as_of} ({args.timezone})")
    for name in GOLD_TABLES:
        print(f"  {name:28s} {tables[name].num_rows:>10,d} rows")
    print(f"  {'seconds':28s} {seconds:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
