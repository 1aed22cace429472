"""Column expressions that several gold builders share."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def rate(numerator: str, denominator: str) -> Column:
    """``numerator / denominator`` as a double in [0, 1], NULL where the denominator is 0.

    CASE WHEN evaluates the division only for a positive denominator (ANSI mode would raise).
    """
    return F.when(
        F.col(denominator) > 0, F.col(numerator).cast("double") / F.col(denominator).cast("double")
    ).cast("double")
