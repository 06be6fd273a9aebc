"""Push the latest value per entity from a group's Gold table into an online store.

The first sync of a group into a store is full: the latest row per entity of the table at its
current Delta version. Later syncs are incremental: only the Change Data Feed since the last
synced version (Gold tables are created with `delta.enableChangeDataFeed = true`). When the
feed is not available for that range (enabled later, vacuumed), the sync falls back to a full
one and says so. The watermark (last synced Delta version) is kept in the registry per group
version and online store, so any process continues where the last one stopped.

Latest rows come to the driver as Arrow, one hash bucket of entities at a time (the bucket
count is sized from Delta's commit metrics or table size), and go to the store in pipelined
batches; nothing collects the whole table. Only DataFrame and SQL calls are used.
The store's compare-and-set on event time makes replays harmless; entities whose rows were
deleted from the table (overwrite, backfill) are re-read from the table and written with
`force`, or removed from the store when no row is left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import FeatureStoreError, MaterializationError
from featurelake.online.base import ColumnBatch, OnlineStore
from featurelake.online.values import KEY_SEPARATOR, from_micros, key_part
from featurelake.registry import Registry, TableLocation
from featurelake.schema import INGESTED_AT, DataType, FeatureGroupSchema, SqlType
from featurelake.times import utc_naive

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SYNC_KIND = "online_sync"
BATCH_ROWS = 5_000
CHUNK_BYTES = 64 * 1024 * 1024
HISTORY_WINDOW = 50
_TS = "__fl_ts_us"
_ING = "__fl_ing_us"
_CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


@dataclass(frozen=True)
class SyncResult:
    """What a sync did. `mode`: `full`, `incremental` or `up_to_date`."""

    group: str
    version: int
    target: str
    mode: str
    from_version: int | None
    to_version: int
    rows_written: int
    rows_rejected: int
    rows_deleted: int
    duration_seconds: float
    fallback_reason: str | None = None
    spark_seconds: float = 0.0
    push_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows pushed per second of the whole sync (registry and Spark included)."""
        rows = self.rows_written + self.rows_rejected
        return rows / self.duration_seconds if self.duration_seconds > 0 else 0.0

    @property
    def push_rows_per_second(self) -> float:
        """Rows per second of moving rows from Arrow into the store (conversion and writes)."""
        rows = self.rows_written + self.rows_rejected
        return rows / self.push_seconds if self.push_seconds > 0 else 0.0


def watermark_key(schema: FeatureGroupSchema, store: OnlineStore) -> str:
    return f"{schema.name}@{schema.version}|{store.target}"


def sync_to_online(
    store: OnlineStore,
    registry: Registry,
    group: str | FeatureGroupSchema,
    since: int | datetime | None = None,
    *,
    full: bool = False,
    spark: SparkSession | None = None,
    batch_rows: int = BATCH_ROWS,
) -> SyncResult:
    """Sync one group version (`name`, `name@version` or a schema) into `store`.

    `since`: a Delta version or commit time to read changes from (inclusive); by default the
    version after the last sync into this store, or everything on the first sync. `full=True`
    re-reads the whole table.
    """
    started = time.perf_counter()
    schema = _resolve(registry, group)
    store.resolve_group(schema)
    session = spark or registry.spark
    location = registry.gold_location(schema.name, schema.version)
    history = _history(session, location, schema)
    current = history[0].version
    key = watermark_key(schema, store)
    start: int | datetime | None = None
    if not full:
        if since is not None:
            start = since
        else:
            state = registry.get_object(SYNC_KIND, key)
            if state is not None and state.get("delta_version") is not None:
                start = int(state["delta_version"]) + 1
    if isinstance(start, int) and start > current:
        return SyncResult(
            schema.name,
            schema.version,
            store.target,
            "up_to_date",
            start,
            current,
            0,
            0,
            0,
            time.perf_counter() - started,
        )
    pusher = _Pusher(store, schema, batch_rows)
    mode = "full"
    fallback = None
    if start is not None:
        try:
            chunks = _chunks(session, location, history, start)
            _incremental(session, location, schema, start, current, pusher, chunks)
            mode = "incremental"
        except FeatureStoreError:
            raise
        except Exception as error:
            fallback = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            logger.warning(
                "online sync of {}@{}: the change feed from {} is not available ({}); "
                "doing a full sync",
                schema.name,
                schema.version,
                start,
                fallback,
            )
    if mode == "full":
        chunks = _chunks(session, location, history, None)
        _push_frame(pusher, _read(session, location, version=current), force=False, chunks=chunks)
    duration = time.perf_counter() - started
    registry.put_object(
        SYNC_KIND,
        key,
        {
            "group": schema.name,
            "version": schema.version,
            "target": store.target,
            "delta_version": current,
            "mode": mode,
            "rows_written": pusher.written,
            "rows_rejected": pusher.rejected,
            "rows_deleted": pusher.deleted,
            "synced_at": datetime.now(UTC).isoformat(),
            "duration_seconds": round(duration, 3),
        },
    )
    result = SyncResult(
        schema.name,
        schema.version,
        store.target,
        mode,
        start if isinstance(start, int) else None,
        current,
        pusher.written,
        pusher.rejected,
        pusher.deleted,
        duration,
        fallback,
        pusher.spark_seconds,
        pusher.push_seconds,
    )
    logger.info(
        "online sync of {}@{} ({}) to Delta version {}: {} written, {} older rejected, "
        "{} deleted, {:.2f}s",
        schema.name,
        schema.version,
        mode,
        current,
        result.rows_written,
        result.rows_rejected,
        result.rows_deleted,
        duration,
    )
    return result


def push_latest(
    store: OnlineStore,
    schema: FeatureGroupSchema,
    frame: DataFrame,
    *,
    batch_rows: int = BATCH_ROWS,
) -> tuple[int, int]:
    """Write the latest row per entity of `frame` (rows of the group's table) into `store`.

    For writers that already hold the rows they wrote (a streaming micro-batch): no Gold read
    and no watermark. The store's compare-and-set on event time makes replays harmless.
    Returns (written, rejected as older than the stored value).
    """
    store.resolve_group(schema)
    pusher = _Pusher(store, schema, batch_rows)
    _push_frame(pusher, frame, force=False)
    return pusher.written, pusher.rejected


def push_latest_arrow(
    store: OnlineStore,
    schema: FeatureGroupSchema,
    rows: Any,
    *,
    force: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> tuple[int, int]:
    """Write the latest row per entity of `rows` (an Arrow table of the group's Gold rows, as
    delta-rs or a change feed reads them) into `store`, the way a sync writes Spark's rows.

    No Spark and no watermark: for processes that read Gold without Spark (the feature server
    keeping an in-process store filled). Returns (written, rejected as older than the stored
    value); `force` writes even older values (rows re-read after a rewrite of the table).
    """
    store.resolve_group(schema)
    pusher = _Pusher(store, schema, batch_rows)
    _push_arrow(pusher, latest_arrow(rows, schema), force)
    return pusher.written, pusher.rejected


def last_sync(
    registry: Registry, store: OnlineStore, group: str | FeatureGroupSchema
) -> dict[str, Any] | None:
    """The watermark of the last sync of a group into a store, or None."""
    return registry.get_object(SYNC_KIND, watermark_key(_resolve(registry, group), store))


# -- reading the Gold table -----------------------------------------------------------------------


def _resolve(registry: Registry, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
    if isinstance(group, FeatureGroupSchema):
        return registry.get_group(group.name, group.version)
    name, _, version = str(group).partition("@")
    return registry.get_group(name, int(version) if version else None)


@dataclass(frozen=True)
class _Commit:
    version: int
    metrics: dict[str, str]
    removes: bool


def _history(
    spark: SparkSession, location: TableLocation, schema: FeatureGroupSchema
) -> list[_Commit]:
    """The newest `HISTORY_WINDOW` commits, newest first (the first is the current version)."""
    try:
        rows = spark.sql(f"DESCRIBE HISTORY {location.sql_name} LIMIT {HISTORY_WINDOW}").collect()
    except Exception as error:
        text = str(error)
        markers = ("DELTA_MISSING_DELTA_TABLE", "is not a Delta table", "PATH_NOT_FOUND")
        if any(m in text for m in (*markers, "doesn't exist", "TABLE_OR_VIEW_NOT_FOUND")):
            raise MaterializationError(
                f"Group '{schema.name}' v{schema.version} has no data yet ({location}), so "
                "there is nothing to sync online.",
                fix=f"write features first: store.write_features('{schema.name}', df).",
                group=schema.name,
            ) from error
        raise
    commits = []
    for row in rows:
        parameters = row["operationParameters"] or {}
        removes = str(parameters.get("mode", "")).lower() == "overwrite" or row["operation"] in (
            "REPLACE TABLE",
            "CREATE OR REPLACE TABLE",
            "RESTORE",
        )
        metrics = {str(k): str(v) for k, v in (row["operationMetrics"] or {}).items()}
        commits.append(_Commit(int(row["version"]), metrics, removes))
    return commits


def _chunks(
    spark: SparkSession,
    location: TableLocation,
    history: list[_Commit],
    start: int | datetime | None,
) -> int:
    """How many entity buckets to fetch one by one so that each stays near `CHUNK_BYTES`.

    From the bytes the commits since `start` added (and removed, which the change feed also
    returns); from the table size for a full sync or when the range is not in `history`.
    """
    changed: int | None = None
    if isinstance(start, int) and history and history[-1].version <= start:
        changed = 0
        for commit in history:
            if commit.version < start:
                continue
            if commit.removes:
                changed = None
                break
            changed += sum(
                int(value)
                for name, value in commit.metrics.items()
                if name.endswith("Bytes")
                and ("Added" in name or "Output" in name)
                and value.isdigit()
            )
    if changed is None:
        rows = spark.sql(f"DESCRIBE DETAIL {location.sql_name}").collect()
        changed = int(rows[0]["sizeInBytes"] or 0)
    return max(1, math.ceil(changed / CHUNK_BYTES))


def _reader(spark: SparkSession) -> Any:
    return spark.read.format("delta")


def _load(reader: Any, location: TableLocation) -> DataFrame:
    if location.table_name:
        return reader.table(location.table_name)
    return reader.load(location.path)


def _read(spark: SparkSession, location: TableLocation, *, version: int) -> DataFrame:
    return _load(_reader(spark).option("versionAsOf", version), location)


def _incremental(
    spark: SparkSession,
    location: TableLocation,
    schema: FeatureGroupSchema,
    start: int | datetime,
    current: int,
    pusher: _Pusher,
    chunks: int,
) -> None:
    from pyspark.sql import functions as F

    reader = _reader(spark).option("readChangeFeed", "true").option("endingVersion", current)
    if isinstance(start, datetime):
        reader = reader.option("startingTimestamp", start.isoformat(sep=" "))
    else:
        reader = reader.option("startingVersion", int(start))
    changes = _load(reader, location)
    change = F.col("_change_type")
    upserts = changes.where(change.isin("insert", "update_postimage")).drop(*_CDF_COLUMNS)
    _push_frame(pusher, upserts, force=False, chunks=chunks)
    keys = list(schema.entity_keys)
    deleted = changes.where(change == "delete").select(*keys).distinct()
    if not deleted.take(1):
        return
    # Rows were removed (overwrite, backfill, delete): what the table holds now for those
    # entities wins, even when it is older than what the store has.
    snapshot = _read(spark, location, version=current)
    replaced = snapshot.join(deleted, on=keys, how="left_semi")
    _push_frame(pusher, replaced, force=True, chunks=chunks)
    gone = deleted.join(snapshot.select(*keys).distinct(), on=keys, how="left_anti")
    columns = [c.to_pylist() for c in gone.toArrow().columns]
    entities: list[Any] = list(zip(*columns, strict=True)) if len(keys) > 1 else columns[0]
    for first in range(0, len(entities), pusher.batch_rows):
        pusher.deleted += pusher.store.delete(schema, entities[first : first + pusher.batch_rows])


# -- pushing rows ---------------------------------------------------------------------------


class _Pusher:
    def __init__(self, store: OnlineStore, schema: FeatureGroupSchema, batch_rows: int) -> None:
        self.store = store
        self.schema = schema
        self.batch_rows = batch_rows
        self.written = 0
        self.rejected = 0
        self.deleted = 0
        self.spark_seconds = 0.0
        self.push_seconds = 0.0

    def write(self, batch: ColumnBatch, force: bool) -> None:
        written, rejected = self.store.write_columns(self.schema, batch, force=force)
        self.written += written
        self.rejected += rejected


def latest_per_entity(frame: DataFrame, schema: FeatureGroupSchema) -> DataFrame:
    """Keys, event and ingestion time (epoch us) and the features of each entity's latest row.

    Latest = greatest event time, ties broken by the greatest `_ingested_at` (as offline).
    Timestamp features come as epoch microseconds, so no time zone is applied on the way.
    """
    from pyspark.sql import functions as F

    present = set(frame.columns)
    ts = schema.timestamp_key
    ingested = F.col(INGESTED_AT) if INGESTED_AT in present else F.lit(None).cast("timestamp")
    features = [
        (F.col(f.name) if f.name in present else F.lit(None).cast(f.data_type.simple_string()))
        for f in schema.features
    ]
    packed = F.struct(
        F.col(ts).alias("ts"),
        ingested.alias("ing"),
        *[column.alias(f"f{i}") for i, column in enumerate(features)],
    )
    latest = frame.groupBy(*schema.entity_keys).agg(
        F.max_by(packed, F.struct(F.col(ts), ingested)).alias("_latest")
    )
    columns = [F.col(k) for k in schema.entity_keys]
    columns.append(F.unix_micros(F.col("_latest.ts")).alias(_TS))
    columns.append(F.unix_micros(F.col("_latest.ing")).alias(_ING))
    for i, feature in enumerate(schema.features):
        value = F.col(f"_latest.f{i}")
        if feature.data_type.kind is DataType.TIMESTAMP:
            value = F.unix_micros(value)
        columns.append(value.alias(feature.name))
    return latest.select(*columns)


def latest_arrow(rows: Any, schema: FeatureGroupSchema) -> Any:
    """`latest_per_entity` over an Arrow table: the same columns, the same choice of row
    (greatest event time, ties to the greatest `_ingested_at`, a null one counting as least).

    Timestamps, naive (UTC) or zoned, become epoch microseconds.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = list(schema.entity_keys)
    rows = without_views(rows)
    present = set(rows.column_names)
    count = rows.num_rows
    ingested = (
        _micros(rows.column(INGESTED_AT)) if INGESTED_AT in present else pa.nulls(count, pa.int64())
    )
    least = pa.scalar(-(2**63), pa.int64())  # a null time sorts below every time
    order = pa.table(
        {
            **{f"k{i}": rows.column(k) for i, k in enumerate(keys)},
            "t": pc.fill_null(_micros(rows.column(schema.timestamp_key)), least),
            "i": pc.fill_null(ingested, least),
        }
    )
    sort_keys = [(name, "ascending") for name in order.column_names]
    indices = pc.sort_indices(order, sort_keys=sort_keys)
    ranked = order.take(indices).append_column("p", pa.array(range(count), pa.int64()))
    # The last position of each entity's run in the sorted order is its latest row.
    last = ranked.group_by([f"k{i}" for i in range(len(keys))], use_threads=False).aggregate(
        [("p", "max")]
    )
    chosen = indices.take(last.column("p_max"))
    picked = rows.take(chosen)
    columns: dict[str, Any] = {k: picked.column(k) for k in keys}
    columns[_TS] = _micros(picked.column(schema.timestamp_key))
    columns[_ING] = ingested.take(chosen)
    for feature in schema.features:
        if feature.name not in present:
            columns[feature.name] = pa.nulls(len(chosen))
        elif feature.data_type.kind is DataType.TIMESTAMP:
            columns[feature.name] = _micros(picked.column(feature.name))
        else:
            columns[feature.name] = picked.column(feature.name)
    return pa.table(columns)


def without_views(table: Any) -> Any:
    """`table` with view types (string_view, ..., which delta-rs returns and Arrow's `take`
    does not handle) cast to their plain counterparts."""
    import pyarrow as pa

    def plain(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_string_view(kind):
            return pa.string()
        if pa.types.is_binary_view(kind):
            return pa.binary()
        if pa.types.is_list_view(kind) or pa.types.is_list(kind):
            return pa.list_(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_large_list_view(kind) or pa.types.is_large_list(kind):
            return pa.large_list(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_map(kind):
            return pa.map_(
                kind.key_field.with_type(plain(kind.key_type)),
                kind.item_field.with_type(plain(kind.item_type)),
            )
        if pa.types.is_struct(kind):
            return pa.struct([f.with_type(plain(f.type)) for f in kind])
        return kind

    wanted = pa.schema([f.with_type(plain(f.type)) for f in table.schema])
    return table if wanted.equals(table.schema) else table.cast(wanted)


def _micros(column: Any) -> Any:
    """An Arrow timestamp column (any unit, naive or zoned) as epoch microseconds (int64)."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    return column


def _push_frame(pusher: _Pusher, frame: DataFrame, *, force: bool, chunks: int = 1) -> None:
    """Latest row per entity of `frame`, fetched as Arrow one hash bucket of entities at a time.

    Each bucket is its own Spark job whose filter on the entity keys is pushed into the scan,
    so the driver holds at most one bucket (about `CHUNK_ROWS` entities) at once.
    """
    from pyspark.sql import functions as F

    schema = pusher.schema
    latest = latest_per_entity(frame, schema)
    keys = [F.col(k) for k in schema.entity_keys]
    for bucket in range(chunks):
        part = latest
        if chunks > 1:
            part = latest.where(F.pmod(F.xxhash64(*keys), F.lit(chunks)) == bucket)
        started = time.perf_counter()
        table = part.toArrow()
        pusher.spark_seconds += time.perf_counter() - started
        started = time.perf_counter()
        _push_arrow(pusher, table, force)
        pusher.push_seconds += time.perf_counter() - started


def _push_arrow(pusher: _Pusher, table: Any, force: bool) -> None:
    """Write an Arrow table of `latest_per_entity` rows, `batch_rows` at a time, as columns."""
    schema = pusher.schema
    key_count = len(schema.entity_keys)
    converters = [_converter(f.data_type, top=True) for f in schema.features]
    for offset in range(0, table.num_rows, pusher.batch_rows):
        columns = [c.to_pylist() for c in table.slice(offset, pusher.batch_rows).columns]
        if key_count == 1:
            entities = [key_part(v) for v in columns[0]]
        else:
            entities = [
                KEY_SEPARATOR.join(key_part(v) for v in parts)
                for parts in zip(*columns[:key_count], strict=True)
            ]
        features = columns[key_count + 2 :]
        for position, convert in enumerate(converters):
            if convert is not None:
                features[position] = [None if v is None else convert(v) for v in features[position]]
        batch = ColumnBatch(
            entities,
            columns[key_count],
            [0 if v is None else v for v in columns[key_count + 1]],
            schema.feature_names,
            features,
        )
        pusher.write(batch, force)


def _converter(sql_type: SqlType, *, top: bool = False) -> Callable[[Any], Any] | None:
    """What turns Arrow's Python value of `sql_type` into what the stores keep, or None.

    Top-level timestamps arrive as epoch microseconds; nested ones as UTC datetimes, kept naive
    (UTC) like everywhere else; maps arrive as (key, value) pairs and become dicts.
    """
    kind = sql_type.kind
    if kind is DataType.TIMESTAMP:
        return from_micros if top else utc_naive
    if kind is DataType.ARRAY:
        assert sql_type.element is not None
        element = _converter(sql_type.element)
        if element is None:
            return None
        return lambda v: [None if x is None else element(x) for x in v]
    if kind is DataType.MAP:
        assert sql_type.key is not None and sql_type.value is not None
        key = _converter(sql_type.key) or _same
        value = _converter(sql_type.value) or _same
        return lambda v: {key(k): None if x is None else value(x) for k, x in v}
    if kind is DataType.STRUCT:
        fields = [(name, _converter(t)) for name, t in sql_type.fields]
        if all(c is None for _, c in fields):
            return None
        return lambda v: {
            name: (v[name] if c is None or v[name] is None else c(v[name])) for name, c in fields
        }
    return None


def _same(value: Any) -> Any:
    return value
