"""Identity resolution: accounts and account links -> silver ``identity_map`` (DESIGN section 3).

The accounts of all platforms form a graph:

* a node is an account keyed by ``(platform, user_id)``, platform being ``kuaishou`` (Kuaishou
  user id), ``wechat`` (OpenID) or ``wechat_unionid`` (UnionID);
* each link (deduplicated by ``link_id``) adds the edge kuaishou -- wechat OpenID and, when it
  carries a UnionID, the edge wechat OpenID -- wechat UnionID. Several OpenIDs under one UnionID
  therefore end up in one component.

A person is a connected component. Every node, whether it comes from ``accounts`` (accounts seen
in events) or from a link, is in the output exactly once.

``person_id`` is the first 16 hex characters of ``sha2(key, 256)`` of the component's smallest
node key, a key being the string ``"<platform>:<user_id>"`` compared in plain (binary) string
order. It depends only on the set of nodes in the component, never on row order or partitioning,
so a re-run over the same input gives the same ids. A new link that merges two persons gives the
merged person the id of whichever side held the smaller key.

Components are found on the executors with the alternating large-star / small-star algorithm
(Kiveris et al., "Connected Components in MapReduce and Beyond", SoCC 2014): the edge set is
rewritten round after round until every component is a star whose centre is its smallest key.
Each round's edges are ``localCheckpoint``-ed so the plan does not grow with the iterations, and a
round ends with one count that tells whether the edges are all stars yet. Nothing about the graph
is collected to the driver.

A daily run's new links only merge persons, so :func:`relink` applies them to the map it has:
the persons they reach are collected and joined on the driver (at 10M events, a day's 452 links
name 974 accounts), and every other row is kept.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from core import tables
from core.errors import UserError
from jobs.schemas import conform

# A handful of rounds suffices for real identity graphs (a person owns a few accounts); the
# guard is there to fail loudly on a pathological input instead of looping for ever.
DEFAULT_MAX_ITERATIONS = 50

PERSON_ID_HEX_CHARS = 16

# The accounts a link names (platform, link column) and the edges it makes between them, by
# position: kuaishou -- WeChat OpenID, OpenID -- UnionID.
LINK_ACCOUNTS = (("kuaishou", "kuaishou_user_id"), ("wechat", "wechat_openid"), ("wechat_unionid", "wechat_unionid"))
LINK_EDGES = ((0, 1), (1, 2))


class IdentityResolutionDidNotConverge(UserError):
    """The connected-components iteration hit its round limit before every component was a star."""


def build_identity_map(
    accounts: DataFrame,
    links: DataFrame,
    *,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> DataFrame:
    """Resolve accounts and links into ``identity_map`` (``person_id``, ``platform``, ``user_id``).

    ``accounts``: (``platform``, ``user_id``) as seen in events, duplicates allowed.
    ``links``: (``link_id``, ``kuaishou_user_id``, ``wechat_openid``, ``wechat_unionid``,
    ``linked_at``), redeliveries (repeated ``link_id``) allowed.
    Raises ``IdentityResolutionDidNotConverge`` after ``max_iterations`` rounds without convergence.
    """
    unique_links = _dedupe_links(links)
    nodes = _nodes(accounts, unique_links)
    edges = _edges(unique_links)

    stars = _connected_component_stars(edges, max_iterations=max_iterations)

    # A node that is no star's child is its component's centre, or a lone account.
    centres = stars.select(F.col("child").alias("node"), F.col("parent").alias("centre"))
    identity_map = (
        nodes.join(centres, on="node", how="left")
        .withColumn("smallest_key", F.coalesce(F.col("centre"), F.col("node")))
        .withColumn("person_id", _person_id(F.col("smallest_key")))
    )
    return conform(identity_map, tables.IDENTITY_MAP)


def add_accounts(identity_map: DataFrame, accounts: DataFrame) -> DataFrame:
    """``identity_map`` with the ``accounts`` it lacks, each a person of its own.

    Exact when no link arrived since ``identity_map`` was built: every account a link names is
    in it already, so an account it lacks is in no link and is its own component.
    """
    new = (
        accounts.filter(F.col("platform").isNotNull() & F.col("user_id").isNotNull())
        .select("platform", "user_id")
        .distinct()
        .join(identity_map, on=["platform", "user_id"], how="left_anti")
        .withColumn("person_id", _person_id(F.concat_ws(":", F.col("platform"), F.col("user_id"))))
    )
    return conform(identity_map.unionByName(conform(new, tables.IDENTITY_MAP)), tables.IDENTITY_MAP)


def link_copies(links: DataFrame, new_links: DataFrame, *, at_most: int) -> list[tuple] | None:
    """The distinct (``link_id``, ``kuaishou_user_id``, ``wechat_openid``, ``wechat_unionid``) of
    ``links`` (which holds ``new_links`` too) whose ``link_id`` is one of ``new_links``': each new
    link with its earlier copies, for :func:`relink`. None when there are more than ``at_most``."""
    copies = (
        links.join(F.broadcast(new_links.select("link_id")), on="link_id", how="left_semi")
        .select("link_id", *(column for _, column in LINK_ACCOUNTS))
        .distinct()
        .limit(at_most + 1)
        .collect()
    )
    return None if len(copies) > at_most else [tuple(r) for r in copies]


def copies_agree(copies: list[tuple]) -> bool:
    """Whether every link of :func:`link_copies` names the same accounts in all its copies, as
    redeliveries do."""
    return len({copy[0] for copy in copies}) == len(copies)


def relink(identity_map: DataFrame, copies: list[tuple]) -> DataFrame:
    """``identity_map`` after new links (:func:`link_copies`, all agreeing): the persons the links
    reach are resolved again, the rest kept as they are.

    A new link only merges persons: the accounts of each person it reaches, with the links'
    accounts and edges, are collected to the driver and joined there (:func:`smallest_keys`).
    The result is :func:`build_identity_map`'s over all links as long as every copy of a link
    names the same accounts; a copy that differed could replace an edge instead of adding one.
    """
    named: dict[str, tuple[str, str]] = {}  # node key -> (platform, user_id)
    edges: list[tuple[str, str]] = []
    for _, *user_ids in copies:
        accounts = [None if user_id is None else (platform, user_id) for (platform, _), user_id in zip(LINK_ACCOUNTS, user_ids)]
        named.update((_node(account), account) for account in accounts if account is not None)
        edges += [(_node(accounts[a]), _node(accounts[b])) for a, b in LINK_EDGES if accounts[a] and accounts[b]]
    spark = identity_map.sparkSession
    linked = spark.createDataFrame(list(named.values()), "platform string, user_id string")
    reached = identity_map.join(F.broadcast(linked), on=["platform", "user_id"], how="left_semi").select("person_id")
    members = identity_map.join(F.broadcast(reached.distinct()), on="person_id", how="left_semi")
    # Each earlier person stays connected: its accounts hang on the first of them.
    anchor: dict[str, str] = {}
    for person_id, platform, user_id in members.select("person_id", "platform", "user_id").collect():
        node = _node((platform, user_id))
        named[node] = (platform, user_id)
        edges.append((node, anchor.setdefault(person_id, node)))
    smallest = smallest_keys(named, edges)
    resolved = spark.createDataFrame(
        [(platform, user_id, smallest[node]) for node, (platform, user_id) in named.items()],
        "platform string, user_id string, smallest_key string",
    ).withColumn("person_id", _person_id(F.col("smallest_key")))
    kept = identity_map.join(F.broadcast(resolved.select("platform", "user_id")), on=["platform", "user_id"], how="left_anti")
    return conform(kept.unionByName(conform(resolved, tables.IDENTITY_MAP)), tables.IDENTITY_MAP)


def smallest_keys(nodes, edges) -> dict[str, str]:
    """For each of ``nodes``, the smallest node of its connected component under ``edges``
    (pairs of nodes), nodes compared as strings (code point order, which is UTF-8's byte order:
    Spark's)."""
    parent = {node: node for node in nodes}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            # The smaller key is the root, so a root is its component's smallest node.
            parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in parent}


def _node(account: tuple[str, str]) -> str:
    """The node key of (platform, user_id), as :func:`_nodes` makes it in Spark."""
    return f"{account[0]}:{account[1]}"


def _person_id(smallest_key: Column) -> Column:
    return F.substring(F.sha2(smallest_key, 256), 1, PERSON_ID_HEX_CHARS)


def _node_key(platform: str, user_id_column: str) -> Column:
    return F.concat(F.lit(f"{platform}:"), F.col(user_id_column))


def _dedupe_links(links: DataFrame) -> DataFrame:
    """One row per ``link_id``; redeliveries are identical, but pick deterministically anyway."""
    first = Window.partitionBy("link_id").orderBy(
        F.col("linked_at").asc_nulls_last(),
        F.col("kuaishou_user_id").asc_nulls_last(),
        F.col("wechat_openid").asc_nulls_last(),
        F.col("wechat_unionid").asc_nulls_last(),
    )
    return (
        links.withColumn("_link_rank", F.row_number().over(first))
        .filter(F.col("_link_rank") == 1)
        .select("link_id", "kuaishou_user_id", "wechat_openid", "wechat_unionid")
    )


def _nodes(accounts: DataFrame, links: DataFrame) -> DataFrame:
    """Every distinct account: (``node`` key, ``platform``, ``user_id``)."""
    from_links = [
        links.select(F.lit(platform).alias("platform"), F.col(column).alias("user_id")) for platform, column in LINK_ACCOUNTS
    ]
    all_accounts = accounts.select("platform", "user_id")
    for part in from_links:
        all_accounts = all_accounts.unionByName(part)
    return (
        all_accounts.filter(F.col("platform").isNotNull() & F.col("user_id").isNotNull())
        .distinct()
        .withColumn("node", F.concat_ws(":", F.col("platform"), F.col("user_id")))
    )


def _edges(links: DataFrame) -> DataFrame:
    """Undirected edges as (``child``, ``parent``) with ``parent < child``, no self-loops."""
    pairs = [
        links.select(_node_key(*LINK_ACCOUNTS[a]).alias("a"), _node_key(*LINK_ACCOUNTS[b]).alias("b")) for a, b in LINK_EDGES
    ]
    return (
        pairs[0].unionByName(pairs[1])
        # concat() is NULL for a missing id: no edge then, though the link's other ids are nodes.
        .filter(F.col("a").isNotNull() & F.col("b").isNotNull() & (F.col("a") != F.col("b")))
        .select(
            F.greatest("a", "b").alias("child"),
            F.least("a", "b").alias("parent"),
        )
        .distinct()
    )


def _connected_component_stars(edges: DataFrame, *, max_iterations: int) -> DataFrame:
    """Rewrite ``edges`` until each component is a star: (``child`` -> ``parent`` = its centre).

    The centre of each star is the smallest key of its component. Nodes with no edge are not in
    the result.
    """
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    current = edges.localCheckpoint()
    for _ in range(max_iterations):
        # Cutting the lineage every round keeps the plan two steps deep whatever the round count.
        current = _small_star(_large_star(current)).localCheckpoint()
        if _non_star_nodes(current).count() == 0:
            return current
    raise IdentityResolutionDidNotConverge(
        f"identity graph did not reduce to stars within {max_iterations} rounds of "
        "large-star/small-star; look for an unusually long chain of links in the input, or "
        "raise max_iterations"
    )


def _large_star(edges: DataFrame) -> DataFrame:
    """Each node hands its strictly larger neighbours to the smallest node of its neighbourhood."""
    both_ways = (
        edges.select(F.col("child").alias("node"), F.col("parent").alias("neighbour"))
        .unionByName(edges.select(F.col("parent").alias("node"), F.col("child").alias("neighbour")))
        .distinct()
    )
    smallest_around = both_ways.groupBy("node").agg(
        F.least(F.min("neighbour"), F.col("node")).alias("smallest")
    )
    return (
        both_ways.filter(F.col("neighbour") > F.col("node"))
        .join(smallest_around, on="node", how="inner")
        .select(F.col("neighbour").alias("child"), F.col("smallest").alias("parent"))
        .distinct()
    )


def _small_star(edges: DataFrame) -> DataFrame:
    """Each node and its smaller neighbours all attach to the smallest of those neighbours."""
    smallest_below = edges.groupBy("child").agg(F.min("parent").alias("smallest"))
    rehung_neighbours = (
        edges.join(smallest_below, on="child", how="inner")
        .filter(F.col("parent") != F.col("smallest"))
        .select(F.col("parent").alias("child"), F.col("smallest").alias("parent"))
    )
    return (
        smallest_below.select(F.col("child"), F.col("smallest").alias("parent"))
        .unionByName(rehung_neighbours)
        .distinct()
    )


def _non_star_nodes(edges: DataFrame) -> DataFrame:
    """Nodes that break the star shape: a child with several parents, or a parent that is a child.

    With every edge pointing from the larger key to the smaller, no such node means each
    component is one star centred on its smallest key, which is the algorithm's fixed point.
    """
    roles = edges.select(F.col("child").alias("node"), F.lit(1).alias("as_child")).unionByName(
        edges.select(F.col("parent").alias("node"), F.lit(0).alias("as_child"))
    )
    return (
        roles.groupBy("node")
        .agg(
            F.sum("as_child").alias("parents"),
            F.min("as_child").alias("min_role"),
        )
        # parents > 1: two centres; parents >= 1 and min_role == 0: a child that is also a parent.
        .filter((F.col("parents") > 1) | ((F.col("parents") >= 1) & (F.col("min_role") == 0)))
    )
