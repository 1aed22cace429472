"""Pseudonymous user ids: with a key, no platform user id reaches silver or gold, and nothing
else changes (DESIGN section 6: secrets never in code or logs).

Pseudonyms are checked against Python's own ``hmac`` module, not against the code under test.
The same generated bronze is built twice, with and without a key: every gold table must be
equal, silver must hold no id that bronze has, and the persons must be the same accounts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from gold_rows import gold_rows
from test_incremental import DAYS, START, Bronze, _traffic

from core import silver_log
from core.errors import UserError
from core.settings import Settings
from core.storage import LocalStore
from core.tables import GOLD_TABLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "k3y-only-for-this-test-7f3a9c"
REPO = Path(__file__).resolve().parent.parent


def hmac_pseudonym(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def test_pseudonyms_are_hmac_sha256_of_the_ids(spark) -> None:
    from jobs.privacy import pseudonymise

    values = ["ks-user-1", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "用户-42", "x" * 128, None]
    df = spark.createDataFrame([(i, v, v) for i, v in enumerate(values)], "i int, user_id string, other string")
    rows = sorted(pseudonymise(df, ("user_id",), KEY).collect())
    assert [r.user_id for r in rows] == [None if v is None else hmac_pseudonym(v) for v in values]
    assert [r.other for r in rows] == values  # only the named columns change
    assert pseudonymise(df, ("user_id",), None) is df  # no key, no change


def _build(spark, settings: Settings, as_of) -> None:
    from engagement import pipeline
    from engagement.incremental import plan_bronze

    plan_bronze(LocalStore(settings.warehouse), as_of, full_refresh=True)
    for step in (pipeline.build_silver, pipeline.build_gold, pipeline.publish):
        step(spark, settings, as_of)


def _parquet_column_values(files: list[Path], columns: tuple[str, ...]) -> set[str]:
    values: set[str] = set()
    for path in files:
        table = pq.read_table(path, columns=list(columns))
        for column in columns:
            values.update(v for v in table.column(column).to_pylist() if v is not None)
    return values


def _persons(settings: Settings) -> set[frozenset]:
    """Silver's persons, each as the set of its (kind, account id)."""
    version = silver_log.head(LocalStore(settings.warehouse))
    members = defaultdict(set)
    for key in version.identity_map:
        for row in pq.read_table(settings.warehouse / key).to_pylist():
            members[row["person_id"]].add((row["platform"], row["user_id"]))
    return {frozenset(accounts) for accounts in members.values()}


def test_a_key_keeps_user_ids_out_of_silver_and_gold_and_changes_no_number(spark, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    plain = replace(Settings.from_env(), home=tmp_path / "plain", spark_shuffle_partitions=2)
    keyed = replace(plain, home=tmp_path / "keyed", pseudonymisation_key=KEY)
    bronze = Bronze(LocalStore(plain.warehouse))
    traffic = _traffic()
    for day in sorted(traffic):
        bronze.deliver(traffic[day])
    shutil.copytree(plain.warehouse / "bronze", keyed.warehouse / "bronze")
    as_of = START + timedelta(days=DAYS - 1)
    _build(spark, plain, as_of)
    _build(spark, keyed, as_of)

    for table in GOLD_TABLES:
        assert gold_rows(keyed.warehouse, table, as_of) == gold_rows(plain.warehouse, table, as_of), table

    raw = _parquet_column_values(list((plain.warehouse / "bronze" / "events").rglob("*.parquet")), ("user_id", "inviter_user_id"))
    raw |= _parquet_column_values(
        list((plain.warehouse / "bronze" / "identity").rglob("*.parquet")), ("kuaishou_user_id", "wechat_openid", "wechat_unionid")
    )
    version = silver_log.head(LocalStore(keyed.warehouse))
    stored = _parquet_column_values([keyed.warehouse / f for f in version.event_files()], ("user_id", "inviter_user_id"))
    stored |= _parquet_column_values([keyed.warehouse / f for f in version.identity_map], ("user_id",))
    assert raw and stored
    assert not raw & stored, f"user ids in keyed silver: {sorted(raw & stored)[:5]}"
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in stored)
    # The identity graph links the same accounts: the plain persons, their ids hashed by hmac.
    assert _persons(keyed) == {frozenset((kind, hmac_pseudonym(uid)) for kind, uid in p) for p in _persons(plain)}

    # The key itself is nowhere: no file of the warehouse, no log line, not the settings' text.
    for path in keyed.warehouse.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text
    assert KEY not in f"{keyed!r} {keyed.describe()}"

    # Another key, or none, must not be mixed into this silver: the next run says what to do.
    from engagement import pipeline
    from engagement.incremental import plan_bronze

    store = LocalStore(keyed.warehouse)
    for changed, word in ((replace(keyed, pseudonymisation_key="another-key"), "changed"), (replace(keyed, pseudonymisation_key=None), "was removed")):
        next_day = as_of + timedelta(days=1)
        plan_bronze(store, next_day, full_refresh=False)
        with pytest.raises(UserError) as raised:
            pipeline.build_silver(spark, changed, next_day)
        assert f"ENGAGEMENT_PSEUDONYMISATION_KEY {word}" in str(raised.value)
        assert "--full-refresh" in str(raised.value)
    assert silver_log.head(store).number == version.number  # nothing was built


def test_engagement_config_masks_the_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    env["ENGAGEMENT_PSEUDONYMISATION_KEY"] = KEY
    done = subprocess.run(
        [sys.executable, "-m", "engagement.cli", "config"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ENGAGEMENT_PSEUDONYMISATION_KEY=***" in done.stdout
    assert KEY not in done.stdout + done.stderr
