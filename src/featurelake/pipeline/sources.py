"""Reading sources and writing outputs named by a string: a path (Delta, Parquet, CSV, JSON)
or a table name. Shared by the CLI, the jobs and the pipeline nodes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurelake.errors import ConfigurationError
from featurelake.times import utc_naive

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FORMATS = ("auto", "delta", "parquet", "csv", "json", "table")
OUTPUT_FORMATS = ("parquet", "delta", "csv", "table")
_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def looks_like_table(source: str) -> bool:
    """True for `name`, `db.name` or `catalog.db.name` that is not an existing local path."""
    if any(sep in source for sep in ("/", "\\", ":")):
        return False
    if Path(source).exists() or Path(source).suffix.lower() in _SUFFIXES:
        return False
    return all(part.replace("_", "").replace("-", "").isalnum() for part in source.split("."))


def detect_format(source: str) -> str:
    """The format of `source` from its shape: a table name, a file suffix, a `_delta_log`.

    Returns `table`, `csv`, `json`, `parquet`, `delta`, or `delta|parquet` for a folder that
    cannot be inspected locally (object stores): Delta is tried first, then Parquet.
    """
    if looks_like_table(source):
        return "table"
    suffix = Path(source.rstrip("/")).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    local = Path(source.removeprefix("file:"))
    if "://" not in source and local.exists():
        return "delta" if (local / "_delta_log").is_dir() else "parquet"
    return "delta|parquet"


def read_source(
    spark: SparkSession, source: str, fmt: str = "auto", *, what: str = "source"
) -> DataFrame:
    """A DataFrame over `source`; errors name the source and say what to pass instead."""
    fmt = (fmt or "auto").lower()
    if fmt not in FORMATS:
        raise ConfigurationError(
            f"The {what} format '{fmt}' is not supported.",
            fix=f"use one of: {', '.join(FORMATS)}.",
        )
    if not isinstance(source, str) or not source.strip():
        raise ConfigurationError(
            f"The {what} is empty.",
            fix="pass a Delta/Parquet/CSV path or a table name such as 'main.raw.orders'.",
        )
    resolved = detect_format(source) if fmt == "auto" else fmt
    if resolved == "delta|parquet":
        try:
            return _read(spark, source, "delta")
        except Exception as error:
            if "not a Delta table" not in str(error) and "DELTA_MISSING" not in str(error):
                raise _unreadable(source, "delta", what, error) from error
        resolved = "parquet"
    local = Path(source.removeprefix("file:"))
    if resolved != "table" and "://" not in source and not local.exists():
        raise ConfigurationError(
            f"The {what} {source} does not exist.",
            fix="check the path, or pass a table name (with --format table if it has no dot).",
            source=source,
        )
    try:
        return _read(spark, source, resolved)
    except Exception as error:
        raise _unreadable(source, resolved, what, error) from error


def _read(spark: SparkSession, source: str, fmt: str) -> DataFrame:
    if fmt == "table":
        frame = spark.read.table(source)
    else:
        reader = spark.read.format(fmt)
        if fmt == "csv":
            reader = reader.option("header", "true").option("inferSchema", "true")
        frame = reader.load(source)
    # Analyse now (Spark Connect is lazy even about missing tables), so a bad path or table
    # name fails here and not mid-write.
    frame.columns  # noqa: B018
    return frame


def _unreadable(source: str, fmt: str, what: str, error: BaseException) -> ConfigurationError:
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return ConfigurationError(
        f"Cannot read the {what} '{source}' as {fmt}: {first.strip()}",
        fix="check the path or table name, or pass the right format (--format delta, parquet, "
        "csv, json or table).",
        source=source,
    )


def write_output(df: DataFrame, out: str, fmt: str = "parquet", *, overwrite: bool = False) -> str:
    """Write `df` to a path (parquet, delta, csv) or a table; returns where it went.

    An existing output is an error unless `overwrite` is set.
    """
    fmt = (fmt or "parquet").lower()
    if fmt not in OUTPUT_FORMATS:
        raise ConfigurationError(
            f"The output format '{fmt}' is not supported.",
            fix=f"use one of: {', '.join(OUTPUT_FORMATS)}.",
        )
    writer = df.write.mode(
        "overwrite" if overwrite else "error"
    )  # Connect knows no "errorifexists"
    try:
        if fmt == "table":
            writer.format("delta").saveAsTable(out)
        else:
            if fmt == "csv":
                writer = writer.option("header", "true")
            writer.format(fmt).save(out)
    except Exception as error:
        text = str(error)
        if "already exists" in text or "PATH_ALREADY_EXISTS" in text:
            raise ConfigurationError(
                f"The output {out} already exists.",
                fix="pass --overwrite to replace it, or choose another output path.",
                output=out,
            ) from None
        raise
    return out


def parse_time(value: str | date | datetime) -> datetime:
    """A naive UTC datetime from a datetime, a date, or ISO text ('2024-01-31',
    '2024-01-31T12:00', '2024-01-31 12:00:00+02:00', '...Z')."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigurationError(
                f"'{value}' is not a date or time.",
                fix="write it as ISO 8601: '2024-01-31', '2024-01-31T12:00' or "
                "'2024-01-31T12:00:00+02:00' (times without an offset are UTC).",
                value=str(value),
            ) from None
    return utc_naive(parsed)


def parse_time_range(start: Any, end: Any) -> tuple[datetime, datetime] | None:
    """Both bounds parsed (start < end), or None when neither is given."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigurationError(
            "A time range needs both a start and an end.",
            fix="pass both --start and --end (the range is start <= event time < end).",
        )
    begin, finish = parse_time(start), parse_time(end)
    if begin >= finish:
        raise ConfigurationError(
            f"The time range [{begin}, {finish}) is empty.",
            fix="pass a start earlier than the end.",
        )
    return begin, finish
