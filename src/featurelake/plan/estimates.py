"""Row estimates from Delta log statistics: no Spark, no data scan.

Every Delta add action carries `numRecords` and per-column `minValues` / `maxValues` for its
file. delta-rs reads them from the log (`DeltaTable.get_add_actions(flatten=True)`), so an
estimate costs one log read, whatever the size of the data. A request's entity ids and time
bounds (`PruneSpec`) drop the files whose min/max cannot hold a wanted row, the way Spark's
data skipping would; the estimate is the sum of `numRecords` of the files that remain.

Estimates are upper bounds of the rows a read touches, not of the rows it returns. A table
without statistics (or a path delta-rs cannot open) gives an estimate whose `rows` is None.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurelake.times import utc_naive

# Delta truncates timestamp statistics to milliseconds: a file's true max may be up to 1 ms
# above its recorded max.
_MAX_TRUNCATION_US = 1_000


@dataclass(frozen=True)
class PruneSpec:
    """What a request needs: entity key values (per column) and an event-time window.

    A column missing from `key_values` is not restricted; `None` bounds are open. Columns a
    table has no statistics for are ignored for that table.
    """

    key_values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    time_column: str | None = None
    time_min: datetime | None = None
    time_max: datetime | None = None

    @property
    def restricts(self) -> bool:
        return bool(self.key_values) or self.time_min is not None or self.time_max is not None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (sizes, not values)."""
        return {
            "keys": {k: len(v) for k, v in self.key_values.items()},
            "time_column": self.time_column,
            "time_min": self.time_min.isoformat() if self.time_min else None,
            "time_max": self.time_max.isoformat() if self.time_max else None,
        }


@dataclass(frozen=True)
class TableEstimate:
    """Files and rows of one Delta table, before and after pruning."""

    table: str
    files_total: int
    files: int
    rows_total: int | None
    rows: int | None
    pruned_on: tuple[str, ...] = ()
    error: str | None = None
    version: int | None = None
    """The Delta version the statistics come from."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pruned_on": list(self.pruned_on)}


@dataclass(frozen=True)
class Estimate:
    """The sum over the tables a read touches; `rows` is None when any table is unknown."""

    tables: tuple[TableEstimate, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.tables) and all(t.rows is not None for t in self.tables)

    @property
    def rows(self) -> int | None:
        return sum(t.rows or 0 for t in self.tables) if self.known else None

    @property
    def rows_total(self) -> int | None:
        if not self.tables or any(t.rows_total is None for t in self.tables):
            return None
        return sum(t.rows_total or 0 for t in self.tables)

    @property
    def files(self) -> int:
        return sum(t.files for t in self.tables)

    @property
    def files_total(self) -> int:
        return sum(t.files_total for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_total": self.rows_total,
            "files": self.files,
            "files_total": self.files_total,
            "tables": [t.to_dict() for t in self.tables],
        }


def file_statistics(path: str) -> tuple[int, Any]:
    """The current version of the table and its add actions as a pyarrow Table (one row per
    data file)."""
    import pyarrow as pa

    from featurelake.storage import open_table

    table = open_table(path)
    return int(table.version()), pa.table(table.get_add_actions(flatten=True))


def estimate_table(path: str, spec: PruneSpec | None = None) -> TableEstimate:
    """Files and rows of the Delta table at `path`, before and after pruning by `spec`."""
    try:
        version, actions = file_statistics(path)
    except Exception as error:  # not a Delta table, unreachable storage, ...
        text = str(error).strip().splitlines()
        return TableEstimate(
            path, 0, 0, None, None, error=text[0] if text else type(error).__name__
        )
    estimate = estimate_from_actions(path, actions, spec or PruneSpec())
    return dataclasses.replace(estimate, version=version)


def estimate_tables(paths: Iterable[str], spec: PruneSpec | None = None) -> Estimate:
    """`estimate_table` for each path, summed."""
    return Estimate(tuple(estimate_table(path, spec) for path in paths))


def estimate_from_actions(table: str, actions: Any, spec: PruneSpec) -> TableEstimate:
    """Prune the files of one table (its add actions, as from `file_statistics`)."""
    names = set(actions.column_names)
    count = actions.num_rows
    records: list[Any] = [None] * count
    if "num_records" in names:
        records = actions.column("num_records").to_pylist()
    keep = [True] * count
    pruned_on: list[str] = []
    for column, values in spec.key_values.items():
        if _prune_by_values(actions, names, column, values, keep):
            pruned_on.append(column)
    bounded = spec.time_min is not None or spec.time_max is not None
    if spec.time_column and bounded and _prune_by_time(actions, names, spec, keep):
        pruned_on.append(spec.time_column)
    kept = [r for r, k in zip(records, keep, strict=True) if k]
    rows_total = None if any(r is None for r in records) else sum(records)
    rows = None if any(r is None for r in kept) else sum(kept)
    return TableEstimate(
        table=table,
        files_total=count,
        files=len(kept),
        rows_total=rows_total,
        rows=rows,
        pruned_on=tuple(pruned_on),
    )


def _prune_by_values(
    actions: Any, names: set[str], column: str, values: Sequence[Any], keep: list[bool]
) -> bool:
    """Drop files whose [min, max] (or partition value) of `column` holds none of `values`."""
    try:
        wanted = sorted(v for v in values if v is not None)
    except TypeError:  # values of mixed types: do not prune on this column
        return False
    partition = f"partition.{column}"
    if partition in names:
        present = {str(v) for v in wanted} | set(wanted)
        for i, value in enumerate(actions.column(partition).to_pylist()):
            if value is not None and value not in present and str(value) not in present:
                keep[i] = False
        return True
    low_name, high_name = f"min.{column}", f"max.{column}"
    if low_name not in names or high_name not in names:
        return False
    lows = actions.column(low_name).to_pylist()
    highs = actions.column(high_name).to_pylist()
    try:
        for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
            if not keep[i] or low is None or high is None:
                continue
            at = bisect.bisect_left(wanted, low)
            if at >= len(wanted) or wanted[at] > high:
                keep[i] = False
    except TypeError:  # ids of another type than the column: do not prune on it
        return False
    return True


def _prune_by_time(actions: Any, names: set[str], spec: PruneSpec, keep: list[bool]) -> bool:
    """Drop files entirely before `time_min` or entirely after `time_max`."""
    column = spec.time_column
    low_name, high_name = f"min.{column}", f"max.{column}"
    if low_name not in names or high_name not in names:
        return False
    lows = [_micros(v) for v in actions.column(low_name).to_pylist()]
    highs = [_micros(v) for v in actions.column(high_name).to_pylist()]
    start = _micros(spec.time_min) if spec.time_min is not None else None
    end = _micros(spec.time_max) if spec.time_max is not None else None
    for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
        if end is not None and low is not None and low > end:
            keep[i] = False
        if start is not None and high is not None and high + _MAX_TRUNCATION_US < start:
            keep[i] = False
    return True


_EPOCH = datetime(1970, 1, 1)


def _micros(value: Any) -> int | None:
    """Epoch microseconds of a datetime/date (naive values are UTC, like the session)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return (value - _EPOCH) // timedelta(microseconds=1)
    if hasattr(value, "year"):  # a date
        return (datetime(value.year, value.month, value.day) - _EPOCH) // timedelta(microseconds=1)
    return None


def naive_utc(value: Any) -> datetime | None:
    """A naive UTC datetime from a datetime, pandas Timestamp or date (None stays None)."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return utc_naive(value)
    if hasattr(value, "year"):
        return datetime(value.year, value.month, value.day)
    return None


def prune_spec(
    keys: Sequence[str],
    timestamp_key: str,
    *,
    entity_ids: Any = None,
    point_in_time: datetime | None = None,
    entity_time_column: str | None = None,
    ttl: timedelta | None = None,
) -> PruneSpec:
    """The `PruneSpec` of a request, computed without Spark.

    `entity_ids`: values of one key, dicts/tuples of several keys, or a pandas DataFrame with
    the key columns (and `entity_time_column` for point-in-time requests, whose range bounds
    the event times; with a `ttl`, events older than the earliest entity time minus the ttl
    are not needed). A Spark DataFrame is not looked into (that would run a job): the estimate
    then covers every entity.
    """
    key_values: dict[str, tuple[Any, ...]] = {}
    time_min: datetime | None = None
    time_max = naive_utc(point_in_time)
    if entity_ids is not None and _is_pandas(entity_ids):
        frame = entity_ids
        if all(k in frame.columns for k in keys):
            for key in keys:
                key_values[key] = _distinct(frame[key].dropna().tolist())
        if entity_time_column and entity_time_column in frame.columns:
            times = frame[entity_time_column].dropna()
            if len(times):
                import pandas as pd

                stamps = pd.to_datetime(times)
                latest = naive_utc(stamps.max())
                earliest = naive_utc(stamps.min())
                time_max = latest if time_max is None else min(time_max, latest or time_max)
                if ttl is not None and earliest is not None:
                    time_min = earliest - ttl
    elif entity_ids is not None and not _is_spark(entity_ids):
        items = (
            [entity_ids]
            if isinstance(entity_ids, (str, bytes)) or not isinstance(entity_ids, Sequence)
            else list(entity_ids)
        )
        columns: dict[str, list[Any]] = {k: [] for k in keys}
        for item in items:
            if isinstance(item, Mapping):
                for key in keys:
                    columns[key].append(item.get(key))
            elif isinstance(item, (tuple, list)) and len(item) == len(keys):
                for key, value in zip(keys, item, strict=True):
                    columns[key].append(value)
            elif len(keys) == 1:
                columns[keys[0]].append(item)
        key_values = {k: _distinct(v) for k, v in columns.items() if v}
    return PruneSpec(
        key_values=key_values, time_column=timestamp_key, time_min=time_min, time_max=time_max
    )


def _distinct(values: Iterable[Any]) -> tuple[Any, ...]:
    out = {v.item() if hasattr(v, "item") else v for v in values if v is not None}
    try:
        return tuple(sorted(out))
    except TypeError:
        return tuple(out)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def _is_spark(value: Any) -> bool:
    return type(value).__module__.startswith("pyspark.sql") and type(value).__name__ == "DataFrame"
