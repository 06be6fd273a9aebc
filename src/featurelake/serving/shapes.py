"""Call shapes of other feature stores, read into featurelake's own.

Keyword aliases (`feature_names=` for `feature_refs`, `feature_group=` / `data=` for a write)
and the time span of a `backfill=True` write. (Bare feature names, `"age"` for the one group that
has it, are resolved by `plan.refs.resolve_bare_names`.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from featurelake.errors import ArgumentConflictError

_MISSING: Any = object()


def alias(
    ours: Any, seed: Any, *, ours_name: str, seed_name: str, call: str, required: bool = True
) -> Any:
    """The one value given as `ours_name` or as its alias `seed_name` (never both)."""
    if ours is not None and seed is not None:
        raise ArgumentConflictError(
            f"{call}() was given both {ours_name}= and {seed_name}= (the same argument).",
            fix=f"pass it once, as {ours_name}=.",
            argument=ours_name,
        )
    value = ours if ours is not None else seed
    if value is None and required:
        raise ArgumentConflictError(
            f"{call}() needs {ours_name}= (or {seed_name}=).",
            fix=f"pass {ours_name}=.",
            argument=ours_name,
        )
    return value


def time_span(df: Any, timestamp_key: str) -> tuple[datetime, datetime]:
    """`[earliest, latest + 1us)` of a frame's event times: the range a `backfill=True` write
    replaces."""
    if type(df).__module__.startswith("pyspark"):
        from pyspark.sql import functions as F

        row = df.agg(F.min(timestamp_key), F.max(timestamp_key)).collect()[0]
        low, high = row[0], row[1]
    else:
        column = df[timestamp_key]
        low, high = column.min(), column.max()
    if low is None or high is None or low != low:
        raise ArgumentConflictError(
            f"A backfill=True write needs event times in '{timestamp_key}', and the data has none.",
            fix="pass rows with event times, or call store.backfill(group, df, start, end).",
        )
    import pandas as pd

    from featurelake.times import utc_naive

    start = utc_naive(pd.Timestamp(low).to_pydatetime())
    latest = utc_naive(pd.Timestamp(high).to_pydatetime())
    return start, latest + timedelta(microseconds=1)
