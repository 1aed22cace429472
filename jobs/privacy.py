"""Pseudonymous user ids: a keyed hash (HMAC-SHA256) of every account id before it reaches silver.

With ``ENGAGEMENT_PSEUDONYMISATION_KEY`` set, silver (and so gold, the mirror and the report)
never holds a platform's own user id: ``user_id`` and ``inviter_user_id`` of events and the three
account ids of identity links are replaced by the first 32 hex digits (128 bits) of
``HMAC-SHA256(key, id)``. The same id gives the same pseudonym everywhere, so deduplication,
identity resolution (a link still joins the accounts of the events) and every gold number are
unchanged. Without the key a pseudonym cannot be computed from an id, nor reversed. Bronze keeps
what arrived (it is the replay source); restrict who reads it.

The key stays in Python: the hash runs in an Arrow UDF whose closure holds it, never as a
literal in a Spark plan (plans are printed in the UI, in explain output and in some errors).
Silver records a fingerprint of the key (an HMAC of a fixed text), so a run with another key,
or none, refuses to mix pseudonyms with what silver holds and asks for a full refresh.
"""

import hashlib
import hmac

from pyspark.sql import Column, DataFrame

PSEUDONYM_HEX_DIGITS = 32
EVENT_ID_COLUMNS = ("user_id", "inviter_user_id")
LINK_ID_COLUMNS = ("kuaishou_user_id", "wechat_openid", "wechat_unionid")
_FINGERPRINT_TEXT = b"engagement pseudonymisation key fingerprint v1"


def fingerprint(key: str | None) -> str | None:
    """A short public name of the key (None without one): equal keys, equal fingerprints."""
    if not key:
        return None
    return hmac.new(key.encode("utf-8"), _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:16]


def pseudonym_column(column: Column, key: str) -> Column:
    """``column`` (strings) pseudonymised; NULL stays NULL."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    secret, digits = key.encode("utf-8"), PSEUDONYM_HEX_DIGITS

    # Self-contained (stdlib only): pickled by value, it runs on executors that do not have
    # this project's packages.
    @pandas_udf("string")
    def _hash(values: pd.Series) -> pd.Series:
        import hashlib
        import hmac

        return values.map(lambda v: hmac.new(secret, v.encode("utf-8"), hashlib.sha256).hexdigest()[:digits], na_action="ignore")

    return _hash(column)


def pseudonymise(df: DataFrame, columns: tuple[str, ...], key: str | None) -> DataFrame:
    """``df`` with ``columns`` pseudonymised under ``key``; unchanged without a key."""
    if not key:
        return df
    return df.withColumns({name: pseudonym_column(df[name], key) for name in columns})
