"""Silver's version log: what the silver gate has to check after a version it failed."""

from __future__ import annotations

import json
from datetime import date

from core import silver_log
from core.silver_log import Changes, SilverVersion
from core.storage import LocalStore


def _commit(store: LocalStore, number: int, day: int) -> SilverVersion:
    version = SilverVersion(
        number=number, timezone="UTC", offsets={}, events={}, identity_map=[],
        changes=Changes(dates=frozenset({date(2026, 3, day)})),
    )  # fmt: skip
    return silver_log.commit(store, version)


def test_the_gate_checks_everything_changed_since_the_last_version_it_passed(tmp_path):
    store = LocalStore(tmp_path)
    first, second, third = _commit(store, 1, 1), _commit(store, 2, 2), _commit(store, 3, 3)

    # Never passed: every version's changes.
    assert silver_log.unvalidated_changes(store, third).dates == {date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)}
    silver_log.mark_validated(store, 1)
    assert silver_log.last_validated(store) == 1
    # Version 2 failed its gate (no mark): the gate of version 3 checks 2's dates too.
    assert silver_log.unvalidated_changes(store, third).dates == {date(2026, 3, 2), date(2026, 3, 3)}
    assert silver_log.unvalidated_changes(store, second).dates == {date(2026, 3, 2)}
    silver_log.mark_validated(store, 3)
    assert silver_log.last_validated(store) == 3
    # A gate run again, or an older version's: its own changes.
    assert silver_log.unvalidated_changes(store, third).dates == {date(2026, 3, 3)}
    assert silver_log.unvalidated_changes(store, first).dates == {date(2026, 3, 1)}


def test_a_version_keeps_the_id_hash_check_and_one_written_before_it_has_none(tmp_path):
    store = LocalStore(tmp_path)
    checked = silver_log.commit(
        store, SilverVersion(1, "UTC", {}, {}, [], id_hash_check=(-6921883615627926489, 7178784971779722943))
    )
    assert silver_log.head(store).id_hash_check == (-6921883615627926489, 7178784971779722943)
    # A record from before the check was kept: its files' hashes are of no known Spark.
    record = json.loads(checked.to_json())
    del record["id_hash_check"]
    (tmp_path / silver_log.version_key(2)).write_text(json.dumps({**record, "version": 2}))
    assert silver_log.head(store).number == 2
    assert silver_log.head(store).id_hash_check is None
