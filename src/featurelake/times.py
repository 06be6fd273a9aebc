"""One rule for time zones, used everywhere: a naive time means UTC; an aware one is converted.

Users pass times in many shapes: Python `datetime`s with or without `tzinfo`, pandas columns
(naive `datetime64` or tz-aware), Spark `TIMESTAMP` and `TIMESTAMP_NTZ` columns (pandas-written
parquet and many Silver tables are read as `TIMESTAMP_NTZ`). featurelake stores every event
time as a Spark `TIMESTAMP` (an instant), and reads a naive value as that instant in UTC,
whatever the session's or the machine's time zone. The functions below are the only places
that apply the rule; everything that takes a time from a user goes through one of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from featurelake.errors import MaterializationError

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame


def utc_naive(value: datetime) -> datetime:
    """`value` as a naive datetime in UTC (naive input is taken as UTC already)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def event_time_range(
    start: datetime | None, end: datetime | None, *, what: str
) -> tuple[datetime, datetime]:
    """`[start, end)` of event times as naive UTC datetimes (aware ones are converted); a typed
    `MaterializationError` for a missing bound or `start >= end`."""
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise MaterializationError(
            f"The {what} range [{start}, {end}) needs both bounds as datetimes.",
            fix="pass both as datetimes (start inclusive, end exclusive; naive means UTC).",
        )
    start, end = utc_naive(start), utc_naive(end)
    if start >= end:
        raise MaterializationError(
            f"The {what} range [{start}, {end}) is not a valid time range: start is not before "
            "end.",
            fix="pass start < end (start inclusive, end exclusive).",
        )
    return start, end


def utc_aware(value: datetime) -> datetime:
    """`value` as an aware datetime in UTC (naive input is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    """The current time as a naive UTC datetime."""
    return datetime.now(UTC).replace(tzinfo=None)


def spark_time_literal(value: datetime) -> Column:
    """A Spark `TIMESTAMP` literal of `value` (naive means UTC, whatever the machine's zone)."""
    from pyspark.sql import functions as F

    return F.lit(utc_aware(value))


def rows_in_range(
    frame: DataFrame, column: str, time_range: tuple[datetime, datetime]
) -> DataFrame:
    """The rows of `frame` with `start <= column < end` (naive bounds mean UTC)."""
    start, end = time_range
    times = frame[column]
    return frame.where((times >= spark_time_literal(start)) & (times < spark_time_literal(end)))


def sql_time_literal(value: datetime) -> str:
    """A SQL `TIMESTAMP` literal of `value`, zone included (featurelake formats it: no user
    text reaches SQL)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return f"TIMESTAMP '{utc_naive(value).strftime('%Y-%m-%d %H:%M:%S.%f')}Z'"


def is_ntz(data_type: Any) -> bool:
    """True for Spark's `TIMESTAMP_NTZ` (a wall-clock time without a zone)."""
    return type(data_type).__name__ == "TimestampNTZType"


def ntz_as_utc(column: Column) -> Column:
    """A `TIMESTAMP_NTZ` column as `TIMESTAMP`, its wall-clock values read as UTC.

    Exact whatever the session's time zone (a plain cast would read them in that zone).
    """
    from pyspark.sql import functions as F

    return F.make_timestamp(
        F.year(column),
        F.month(column),
        F.dayofmonth(column),
        F.hour(column),
        F.minute(column),
        F.extract(F.lit("SECOND"), column),
        F.lit("UTC"),
    )


def spark_utc(df: DataFrame) -> DataFrame:
    """`df` with every top-level `TIMESTAMP_NTZ` column turned into `TIMESTAMP` (as UTC)."""
    from pyspark.sql import functions as F

    converted = [f.name for f in df.schema.fields if is_ntz(f.dataType)]
    if not converted:
        return df
    return df.select(
        *(
            ntz_as_utc(F.col(f"`{name}`")).alias(name) if name in converted else f"`{name}`"
            for name in df.columns
        )
    )


def pandas_utc(frame: pd.DataFrame, *, aware: bool) -> pd.DataFrame:
    """A copy of `frame` whose datetime columns are in UTC: aware (for Spark, which then reads
    the instants whatever its session zone) or naive (for DuckDB and Arrow readers)."""
    import pandas as pd

    converted = frame.copy()
    for column in converted.columns:
        series = converted[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            utc = series.dt.tz_convert("UTC")
            converted[column] = utc if aware else utc.dt.tz_localize(None)
        elif aware and pd.api.types.is_datetime64_dtype(series.dtype):
            converted[column] = series.dt.tz_localize("UTC")
    return converted
