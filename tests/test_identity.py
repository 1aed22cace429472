"""Identity resolution: persons are connected components of accounts joined by links."""

from __future__ import annotations

import hashlib

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from jobs.identity import IdentityResolutionDidNotConverge, build_identity_map

ACCOUNTS = StructType(
    [
        StructField("platform", StringType(), False),
        StructField("user_id", StringType(), False),
    ]
)
LINKS = StructType(
    [
        StructField("link_id", StringType(), False),
        StructField("kuaishou_user_id", StringType(), False),
        StructField("wechat_openid", StringType(), False),
        StructField("wechat_unionid", StringType(), True),
        StructField("linked_at", StringType(), False),
    ]
)
LINKED_AT = "2026-03-01T20:15:03.250+08:00"


def person(smallest_key: str) -> str:
    """The documented person_id rule, written out independently of jobs.identity."""
    return hashlib.sha256(smallest_key.encode("utf-8")).hexdigest()[:16]


def link(link_id: str, kuaishou: str, openid: str, unionid: str | None = None) -> tuple:
    return (link_id, kuaishou, openid, unionid, LINKED_AT)


def resolve(spark, accounts: list[tuple], links: list[tuple], **kwargs) -> list[tuple]:
    result = build_identity_map(
        spark.createDataFrame(accounts, ACCOUNTS), spark.createDataFrame(links, LINKS), **kwargs
    )
    return sorted(tuple(row) for row in result.collect())


def test_output_schema_is_identity_map(spark):
    result = build_identity_map(
        spark.createDataFrame([("kuaishou", "k1")], ACCOUNTS), spark.createDataFrame([], LINKS)
    )
    # DESIGN section 5, silver identity_map (person_id, platform, user_id), all strings.
    assert [(f.name, f.dataType) for f in result.schema] == [
        ("person_id", StringType()),
        ("platform", StringType()),
        ("user_id", StringType()),
    ]


def test_person_id_is_first_16_hex_of_sha256_of_smallest_key(spark):
    # sha256("kuaishou:k1") = 4a04dd9e6e382d38...; pinned literally so the format cannot drift.
    assert resolve(spark, [("kuaishou", "k1")], []) == [("4a04dd9e6e382d38", "kuaishou", "k1")]


def test_unlinked_accounts_are_each_their_own_person(spark):
    accounts = [("kuaishou", "k1"), ("wechat", "o1"), ("kuaishou", "k1"), ("kuaishou", "k2")]
    assert resolve(spark, accounts, []) == sorted(
        [
            (person("kuaishou:k1"), "kuaishou", "k1"),
            (person("kuaishou:k2"), "kuaishou", "k2"),
            (person("wechat:o1"), "wechat", "o1"),
        ]
    )


def test_kuaishou_account_linked_to_openid_is_one_person(spark):
    accounts = [("kuaishou", "k1"), ("wechat", "o1"), ("kuaishou", "k2")]
    assert resolve(spark, accounts, [link("L1", "k1", "o1")]) == sorted(
        [
            (person("kuaishou:k1"), "kuaishou", "k1"),
            (person("kuaishou:k1"), "wechat", "o1"),
            (person("kuaishou:k2"), "kuaishou", "k2"),
        ]
    )


def test_link_accounts_not_seen_in_events_are_persons_too(spark):
    # Nothing in accounts: the link alone brings in its three nodes.
    assert resolve(spark, [], [link("L1", "k5", "o5", "u5")]) == sorted(
        [
            (person("kuaishou:k5"), "kuaishou", "k5"),
            (person("kuaishou:k5"), "wechat", "o5"),
            (person("kuaishou:k5"), "wechat_unionid", "u5"),
        ]
    )


UNIONID_ACCOUNTS = [("kuaishou", "k9"), ("wechat", "o2"), ("wechat", "o1"), ("kuaishou", "k7")]
UNIONID_LINKS = [link("L1", "k9", "o1", "u1"), link("L2", "k2", "o2", "u1")]
# k9-o1-u1-o2-k2 is one component; its smallest key is "kuaishou:k2". k7 stays alone.
UNIONID_EXPECTED = sorted(
    [
        (person("kuaishou:k2"), "kuaishou", "k2"),
        (person("kuaishou:k2"), "kuaishou", "k9"),
        (person("kuaishou:k2"), "wechat", "o1"),
        (person("kuaishou:k2"), "wechat", "o2"),
        (person("kuaishou:k2"), "wechat_unionid", "u1"),
        (person("kuaishou:k7"), "kuaishou", "k7"),
    ]
)


def test_unionid_merges_two_openids_and_their_kuaishou_accounts(spark):
    assert resolve(spark, UNIONID_ACCOUNTS, UNIONID_LINKS) == UNIONID_EXPECTED


# A path of 7 nodes and 6 edges whose smallest key sits at the far end:
# kuaishou:c7 - wechat:d6 - kuaishou:c5 - wechat:d4 - kuaishou:c3 - wechat:d2 - kuaishou:c1
CHAIN_LINKS = [
    link("C1", "c7", "d6"),
    link("C2", "c5", "d6"),
    link("C3", "c5", "d4"),
    link("C4", "c3", "d4"),
    link("C5", "c3", "d2"),
    link("C6", "c1", "d2"),
]
CHAIN_EXPECTED = sorted(
    [
        (person("kuaishou:c1"), "kuaishou", "c1"),
        (person("kuaishou:c1"), "kuaishou", "c3"),
        (person("kuaishou:c1"), "kuaishou", "c5"),
        (person("kuaishou:c1"), "kuaishou", "c7"),
        (person("kuaishou:c1"), "wechat", "d2"),
        (person("kuaishou:c1"), "wechat", "d4"),
        (person("kuaishou:c1"), "wechat", "d6"),
    ]
)


def test_long_chain_of_links_is_one_person(spark):
    assert resolve(spark, [("kuaishou", "c7")], CHAIN_LINKS) == CHAIN_EXPECTED


def test_chain_needs_more_than_one_round_and_the_guard_says_so(spark):
    with pytest.raises(IdentityResolutionDidNotConverge, match="within 1 rounds"):
        resolve(spark, [("kuaishou", "c7")], CHAIN_LINKS, max_iterations=1)


def test_duplicate_links_and_accounts_count_once(spark):
    accounts = [("kuaishou", "k1"), ("kuaishou", "k1"), ("wechat", "o1"), ("wechat", "o1")]
    links = [
        link("L1", "k1", "o1", "u1"),
        link("L1", "k1", "o1", "u1"),  # redelivery
        link("L2", "k1", "o1", "u1"),  # a second link between the same accounts
    ]
    assert resolve(spark, accounts, links) == sorted(
        [
            (person("kuaishou:k1"), "kuaishou", "k1"),
            (person("kuaishou:k1"), "wechat", "o1"),
            (person("kuaishou:k1"), "wechat_unionid", "u1"),
        ]
    )


def test_person_ids_do_not_depend_on_input_order_or_partitioning(spark):
    accounts = spark.createDataFrame(list(reversed(UNIONID_ACCOUNTS)), ACCOUNTS).repartition(3)
    links = spark.createDataFrame(
        list(reversed(UNIONID_LINKS + CHAIN_LINKS)), LINKS
    ).repartition(5)
    result = sorted(tuple(row) for row in build_identity_map(accounts, links).collect())
    assert result == sorted(UNIONID_EXPECTED + CHAIN_EXPECTED)


def test_every_account_is_in_exactly_one_person(spark):
    accounts = [("kuaishou", "k7"), ("kuaishou", "k8"), ("wechat", "o8"), ("wechat", "o9")]
    links = UNIONID_LINKS + [link("L3", "k8", "o8")]
    result = resolve(spark, accounts, links)
    accounts_out = [(platform, user_id) for _, platform, user_id in result]
    assert sorted(accounts_out) == [
        ("kuaishou", "k2"),
        ("kuaishou", "k7"),
        ("kuaishou", "k8"),
        ("kuaishou", "k9"),
        ("wechat", "o1"),
        ("wechat", "o2"),
        ("wechat", "o8"),
        ("wechat", "o9"),
        ("wechat_unionid", "u1"),
    ]
    assert {person_id for person_id, _, _ in result} == {
        person("kuaishou:k2"),
        person("kuaishou:k7"),
        person("kuaishou:k8"),
        person("wechat:o9"),
    }


def test_accounts_added_without_new_links_are_their_own_persons_and_the_rest_is_kept(spark):
    from jobs.identity import add_accounts

    before = build_identity_map(
        spark.createDataFrame([("kuaishou", "k1"), ("wechat", "o1")], ACCOUNTS), spark.createDataFrame([link("L1", "k1", "o1")], LINKS)
    )
    later = spark.createDataFrame([("wechat", "o1"), ("wechat", "o9"), ("wechat", "o9")], ACCOUNTS)
    assert sorted(tuple(r) for r in add_accounts(before, later).collect()) == sorted(
        [
            (person("kuaishou:k1"), "kuaishou", "k1"),
            (person("kuaishou:k1"), "wechat", "o1"),
            (person("wechat:o9"), "wechat", "o9"),
        ]
    )


def test_smallest_keys_gives_each_node_its_components_smallest_node():
    from jobs.identity import smallest_keys

    # Two components joined only through their larger nodes, and a lone node.
    nodes = ["wechat:o9", "kuaishou:k5", "wechat:o1", "kuaishou:k2", "wechat_unionid:u1", "kuaishou:k7"]
    edges = [("wechat:o9", "wechat_unionid:u1"), ("kuaishou:k5", "wechat:o1"), ("wechat_unionid:u1", "wechat:o1"), ("kuaishou:k2", "wechat:o9")]
    assert smallest_keys(nodes, edges) == {
        "wechat:o9": "kuaishou:k2",
        "kuaishou:k5": "kuaishou:k2",
        "wechat:o1": "kuaishou:k2",
        "kuaishou:k2": "kuaishou:k2",
        "wechat_unionid:u1": "kuaishou:k2",
        "kuaishou:k7": "kuaishou:k7",
    }


def test_smallest_keys_compares_keys_in_utf8_byte_order():
    from jobs.identity import smallest_keys

    # "é" (U+00E9, bytes C3 A9) sorts after "z" in UTF-8 byte order and in code point order.
    assert smallest_keys(["wechat:é", "wechat:z"], [("wechat:é", "wechat:z")])["wechat:é"] == "wechat:z"


def _relinked(spark, accounts: list[tuple], old_links: list[tuple], new_links: list[tuple]) -> list[tuple]:
    from jobs.identity import link_copies, relink

    before = build_identity_map(spark.createDataFrame(accounts, ACCOUNTS), spark.createDataFrame(old_links, LINKS))
    every_link = spark.createDataFrame(old_links + new_links, LINKS)
    copies = link_copies(every_link, spark.createDataFrame(new_links, LINKS), at_most=10)
    return sorted(tuple(r) for r in relink(before, copies).collect())


def test_a_new_link_merges_the_persons_it_reaches_and_keeps_the_others(spark):
    # Day 1: k9-o1-u1 is a person (smallest key kuaishou:k9), k2 and k7 are alone.
    # Day 2: L2 joins k2 and a new OpenID o2 under u1: k2's person and k9's become one.
    accounts = [("kuaishou", "k9"), ("wechat", "o1"), ("kuaishou", "k2"), ("kuaishou", "k7")]
    assert _relinked(spark, accounts, [UNIONID_LINKS[0]], [UNIONID_LINKS[1]]) == UNIONID_EXPECTED


def test_new_links_that_close_a_chain_merge_it_whole(spark):
    # The chain's two ends were persons of their own (c7-d6-c5 and c3-d2-c1); C3 joins them.
    old = [lk for lk in CHAIN_LINKS if lk[0] != "C3"]
    assert _relinked(spark, [("kuaishou", "c7")], old, [CHAIN_LINKS[2]]) == CHAIN_EXPECTED


def test_a_redelivered_link_and_a_link_of_new_accounts_change_nothing_else(spark):
    accounts = [("kuaishou", "k1"), ("wechat", "o1"), ("kuaishou", "k3")]
    old = [link("L1", "k1", "o1")]
    new = [link("L1", "k1", "o1"), link("L5", "k5", "o5", "u5")]
    assert _relinked(spark, accounts, old, new) == sorted(
        [
            (person("kuaishou:k1"), "kuaishou", "k1"),
            (person("kuaishou:k1"), "wechat", "o1"),
            (person("kuaishou:k3"), "kuaishou", "k3"),
            (person("kuaishou:k5"), "kuaishou", "k5"),
            (person("kuaishou:k5"), "wechat", "o5"),
            (person("kuaishou:k5"), "wechat_unionid", "u5"),
        ]
    )


def test_link_copies_gives_each_new_link_with_its_earlier_copies_and_copies_agree_checks_them(spark):
    from jobs.identity import copies_agree, link_copies

    old = [link("L1", "k1", "o1"), link("L2", "k2", "o2", "u2"), link("L3", "k3", "o3")]
    redelivered = [link("L1", "k1", "o1")]
    changed = [link("L2", "k2", "o2")]  # the same link_id without its UnionID

    def copies(new):
        found = link_copies(spark.createDataFrame(old + new, LINKS), spark.createDataFrame(new, LINKS), at_most=2)
        return None if found is None else sorted(found, key=repr)

    assert copies(redelivered) == [("L1", "k1", "o1", None)]
    assert copies(changed) == sorted([("L2", "k2", "o2", None), ("L2", "k2", "o2", "u2")], key=repr)
    assert copies(redelivered + changed) is None  # three distinct copies, more than at_most
    assert copies_agree(copies(redelivered))
    assert not copies_agree(copies(changed))
