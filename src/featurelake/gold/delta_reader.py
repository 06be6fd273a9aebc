"""Read Delta tables without Spark: delta-rs (`deltalake`) snapshots as Arrow tables.

Reads go through delta-rs' query engine (`deltalake.QueryBuilder`, DataFusion over the Delta
kernel), which replays the log of the requested version: files the log removed are never read,
deletion vectors are applied and column mapping is resolved. (The plain pyarrow dataset of
delta-rs does neither for every table, so it is not used here.) A version or a timestamp picks
the snapshot (time travel).

Filters are pushed into the scan so delta-rs skips files by their log statistics: equality on
key values and bounds on the event time. Their literals are formatted here from typed Python
values (integers, strings with quotes doubled, timestamps), never from user SQL text. Timestamp
columns come back as naive UTC (`timestamp[us]`), as Spark shows them with a UTC session.

A table delta-rs cannot read (a reader feature it does not support, or a newer protocol)
raises `DeltaTableNotReadableError`, naming the features and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from featurelake.errors import DeltaTableNotReadableError, MaterializationError, first_line
from featurelake.gold.commit_times import version_at

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

READABLE_READER_FEATURES = frozenset(
    {"deletionVectors", "columnMapping", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}
)
"""Reader features delta-rs' query engine honours (checked against Delta 4.0 tables)."""
MAX_READER_VERSION = 3


@dataclass(frozen=True)
class ScanFilter:
    """Rows a read needs: values per column (any of them) and an inclusive time window."""

    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    time_column: str | None = None
    time_min: datetime | None = None
    time_max: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """One version of a Delta table as delta-rs sees it."""

    path: str
    version: int
    table: DeltaTable

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.table.schema().fields]

    def arrow_schema(self) -> pa.Schema:
        """The table's columns as an Arrow schema (timestamps as naive UTC)."""
        import pyarrow as pa

        schema = pa.schema(self.table.schema().to_arrow())
        return pa.schema([f.with_type(_naive_type(f.type)) for f in schema])


def open_snapshot(
    path: str, *, version: int | None = None, timestamp: datetime | str | None = None
) -> Snapshot:
    """The table at `path`, at `version` or as of `timestamp` (its latest commit at or before
    it, by the rule of `commit_times`), checked readable."""
    from deltalake.exceptions import TableNotFoundError

    from featurelake.storage import open_table

    try:
        if timestamp is not None:
            version = version_at(path, timestamp)
        table = open_table(path, version=version)
    except MaterializationError:
        raise
    except TableNotFoundError as error:
        raise MaterializationError(
            f"There is no Delta table at {path}" + (f" (version {version})" if version else ""),
            fix="write the group first, or check the path and the version asked for.",
            path=path,
        ) from error
    except Exception as error:
        if "version" in str(error).lower() or timestamp is not None:
            raise MaterializationError(
                f"The Delta table at {path} has no snapshot for "
                f"{'version ' + str(version) if version is not None else str(timestamp)}: "
                f"{first_line(error)}",
                fix="ask for a version or time within the table's history (store.history(group)).",
                path=path,
            ) from error
        raise _not_readable(path, error) from error
    check_readable(path, table)
    return Snapshot(path=path, version=int(table.version()), table=table)


def check_readable(path: str, table: DeltaTable) -> None:
    """Raise DeltaTableNotReadableError when the table needs what delta-rs cannot read."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    unknown = sorted(features - READABLE_READER_FEATURES)
    if protocol.min_reader_version > MAX_READER_VERSION or unknown:
        what = (
            f"the reader feature(s) {', '.join(unknown)}"
            if unknown
            else f"reader protocol version {protocol.min_reader_version}"
        )
        raise DeltaTableNotReadableError(
            f"delta-rs cannot read the Delta table at {path}: it uses {what}, which the "
            f"installed deltalake does not support (it reads "
            f"{', '.join(sorted(READABLE_READER_FEATURES))}).",
            fix="read it with the Spark engine (engine='spark'), or remove the feature from "
            "the table (ALTER TABLE ... DROP FEATURE ...).",
            path=path,
            reader_features=sorted(features),
        )


def read_arrow(
    snapshot: Snapshot,
    columns: Sequence[str] | None = None,
    scan_filter: ScanFilter | None = None,
) -> pa.Table:
    """The rows of `snapshot` (the `columns` asked for, pruned by `scan_filter`) as Arrow,
    timestamps as naive UTC."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    present = snapshot.columns
    wanted = list(columns) if columns is not None else present
    missing = [c for c in wanted if c not in present]
    if missing:
        raise MaterializationError(
            f"The Delta table at {snapshot.path} (version {snapshot.version}) has no column(s) "
            f"{missing}.",
            fix="check the group's schema against the table (a feature added later exists from "
            "the version that added it).",
            path=snapshot.path,
        )
    where = _where(scan_filter, snapshot) if scan_filter else ""
    select = ", ".join(quote(c) for c in wanted)
    sql = f"SELECT {select} FROM fl_table{where}"
    try:
        reader = QueryBuilder().register("fl_table", snapshot.table).execute(sql)
        table = pa.table(reader)
    except Exception as error:
        raise _not_readable(snapshot.path, error) from error
    return naive_utc_times(table)


def naive_utc_times(table: pa.Table) -> pa.Table:
    """`table` with tz-aware timestamp columns as naive UTC `timestamp[us]` (nested ones too)."""
    import pyarrow as pa

    schema = pa.schema([f.with_type(_naive_type(f.type)) for f in table.schema])
    return table if schema.equals(table.schema) else table.cast(schema)


def _naive_type(kind: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        return pa.timestamp("us")
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(kind.value_field.with_type(_naive_type(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct(
            [
                kind.field(i).with_type(_naive_type(kind.field(i).type))
                for i in range(kind.num_fields)
            ]
        )
    if pa.types.is_map(kind):
        return pa.map_(_naive_type(kind.key_type), _naive_type(kind.item_type))
    return kind


def _where(scan_filter: ScanFilter, snapshot: Snapshot) -> str:
    schema = snapshot.arrow_schema()
    present = set(schema.names)
    parts = []
    for column, values in scan_filter.values.items():
        if column not in present:
            continue
        kind = schema.field(column).type
        wanted = [v for v in values if v is not None]
        if not wanted or not all(_matches(v, kind) for v in wanted):
            continue  # values featurelake cannot compare in the scan: the caller filters them
        literals = [lit for lit in map(sql_literal, wanted) if lit is not None]
        if len(literals) < len(wanted):
            continue  # a value with no literal (NaN, ...): no pruning on this column
        parts.append(f"{quote(column)} IN ({', '.join(sorted(set(literals)))})")
    time_column = scan_filter.time_column
    if time_column and time_column in present:
        if scan_filter.time_max is not None:
            parts.append(f"{quote(time_column)} <= {sql_literal(scan_filter.time_max)}")
        if scan_filter.time_min is not None:
            parts.append(f"{quote(time_column)} >= {sql_literal(scan_filter.time_min)}")
    return " WHERE " + " AND ".join(parts) if parts else ""


def _matches(value: Any, kind: pa.DataType) -> bool:
    """True when `value` compares with a column of `kind` without a cast."""
    import pyarrow as pa

    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if pa.types.is_integer(kind):
        return isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return isinstance(value, str)
    if pa.types.is_timestamp(kind):
        return isinstance(value, datetime)
    if pa.types.is_date(kind):
        return isinstance(value, date) and not isinstance(value, datetime)
    if pa.types.is_boolean(kind):
        return isinstance(value, bool)
    return False


def sql_literal(value: Any) -> str | None:
    """A SQL literal for a plain typed value, or None for values not written as literals."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return f"TIMESTAMP '{stamp.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return None


def quote(name: str) -> str:
    """A double-quoted SQL identifier (DataFusion and DuckDB)."""
    return '"' + str(name).replace('"', '""') + '"'


def _not_readable(path: str, error: BaseException) -> DeltaTableNotReadableError:
    return DeltaTableNotReadableError(
        f"delta-rs cannot read the Delta table at {path}: {first_line(error)}",
        fix="read it with the Spark engine (engine='spark'); if the table uses a Delta feature "
        "delta-rs does not support, remove it (ALTER TABLE ... DROP FEATURE ...).",
        path=path,
    )


__all__ = [
    "READABLE_READER_FEATURES",
    "ScanFilter",
    "Snapshot",
    "check_readable",
    "naive_utc_times",
    "open_snapshot",
    "quote",
    "read_arrow",
    "sql_literal",
]
