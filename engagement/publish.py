"""Publication: validated gold of one date becomes visible to analysts, all tables or none.

Gold is built into ``staging/`` and moved into place table by table; the publication record
(``published/D.json``) is written last. Readers (``engagement query``, the PostgreSQL mirror)
only see dates with a record, so a crash half-way leaves the previous publication visible, and
re-running the step finishes the job.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timezone
from typing import Any

from core.errors import UserError
from core.layout import gold_path, publication_record, staging_path
from core.settings import Settings
from core.tables import GOLD_TABLES


class PublishError(UserError):
    """Gold of a date cannot be published yet: the message names the step to run first."""


def publish(settings: Settings, as_of_date: date) -> dict[str, Any]:
    """Move the validated gold tables of ``as_of_date`` from staging into place, then record it.

    Returns the publication record. With ``ENGAGEMENT_POSTGRES_URL`` set, the same tables are
    then mirrored to PostgreSQL.
    """
    from jobs.storage import parquet_rows

    for name in GOLD_TABLES:
        source = staging_path(settings.warehouse, name, as_of_date)
        target = gold_path(settings.warehouse, name, as_of_date)
        if not source.is_dir():
            if target.is_dir():
                continue  # already moved by an earlier attempt of this step
            raise PublishError(
                f"nothing to publish for {name} on {as_of_date}: run build_gold first "
                f"(engagement run --as-of {as_of_date})"
            )
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    record = {
        "as_of_date": as_of_date.isoformat(),
        "published_at": datetime.now(timezone.utc).isoformat(),
        "tables": {name: str(gold_path(settings.warehouse, name, as_of_date)) for name in GOLD_TABLES},
        "row_counts": {name: parquet_rows(gold_path(settings.warehouse, name, as_of_date)) for name in GOLD_TABLES},
    }
    final = publication_record(settings.warehouse, as_of_date)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{as_of_date.isoformat()}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, final)
    if settings.postgres_url:
        # After the record: a PostgreSQL failure fails the step, and a retry republishes (idempotent).
        from engagement.postgres import publish_to_postgres

        publish_to_postgres(settings.postgres_url, settings.warehouse, as_of_date)
    return record
