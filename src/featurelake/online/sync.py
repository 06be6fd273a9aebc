"""Push the latest value per entity from a group's Gold table into an online store.

The first sync of a group into a store is full: the latest row per entity of the table at its
current Delta version. Later syncs are incremental: only the Change Data Feed since the last
synced version (Gold tables are created with `delta.enableChangeDataFeed = true`). When the
feed is not available for that range (enabled later, vacuumed), the sync falls back to a full
one and says so. The watermark (last synced Delta version) is kept in the registry per group
version and online store, so any process continues where the last one stopped.

The engine follows the size of the read, which the table's log gives before any data is read
(delta-rs for path tables, no Spark; `DESCRIBE HISTORY` for catalog tables). A read of up to
`DRIVER_BYTES` of Delta data from a path table (a table of a few million rows, a change feed)
is done with delta-rs on the driver (`online.sync_delta`): no Spark job at all, and one driver
keeps a Redis server busy. The driver then holds about as much as the Spark path below holds
at most (two of its buckets). Larger reads run on Spark (`online.sync_spark`): when the store
can be opened from another process (Redis), each Spark task writes its own partition of latest
rows from the executors, in parallel, nothing collected on the driver; otherwise the rows come
to the driver as Arrow, one hash bucket of entities at a time. `engine=` forces one. Either way
the rows reach the store as Arrow columns (`OnlineStore.write_arrow`), and the store's
compare-and-set on event time makes replays harmless; entities whose rows were deleted from
the table (overwrite, backfill) are re-read from the table and written with `force`, or
removed from the store when no row is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import (
    ArgumentConflictError,
    FeatureStoreError,
    UnsupportedOperationError,
)
from featurelake.online import sync_spark
from featurelake.online.arrow_rows import latest_arrow, without_views
from featurelake.online.base import OnlineStore
from featurelake.online.sync_delta import DeltaSource, split_changes
from featurelake.online.sync_history import (
    Commit,
    change_bytes,
    covered,
    may_delete,
)
from featurelake.online.sync_spark import latest_per_entity
from featurelake.registry import Registry, TableLocation
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "SYNC_KIND",
    "SyncResult",
    "last_sync",
    "latest_arrow",
    "latest_per_entity",
    "push_latest",
    "push_latest_arrow",
    "sync_to_online",
    "watermark_key",
    "without_views",
]

SYNC_KIND = "online_sync"
BATCH_ROWS = 5_000
CHUNK_BYTES = 64 * 1024 * 1024
DRIVER_BYTES = 2 * CHUNK_BYTES
ENGINES = ("auto", "delta-rs", "spark", "executors")


@dataclass(frozen=True)
class SyncResult:
    """What a sync did. `mode`: `full`, `incremental` or `up_to_date`; `engine`: `delta-rs`
    (read on the driver, no Spark), `spark` (Spark, written from the driver) or `executors`
    (Spark, written from its executors)."""

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
    """Seconds spent reading the latest rows (Spark jobs, or delta-rs on the driver); with
    `executors`, the whole job, writes included."""
    push_seconds: float = 0.0
    """Seconds spent writing rows into the store (with `executors`: summed over the tasks,
    which run in parallel)."""
    engine: str = ""

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
    engine: str = "auto",
) -> SyncResult:
    """Sync one group version (`name`, `name@version` or a schema) into `store`.

    `since`: a Delta version or commit time to read changes from (inclusive); by default the
    version after the last sync into this store, or everything on the first sync. `full=True`
    re-reads the whole table. `engine`: `auto` (by the size of the read), `delta-rs`, `spark`
    or `executors` (see the module's description).
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise ArgumentConflictError(
            f"sync_to_online(engine={engine!r}) is not an engine.",
            fix=f"pass one of {', '.join(ENGINES)}.",
        )
    schema = _resolve(registry, group)
    store.resolve_group(schema)
    gold = _Gold(registry, schema, spark, delta_rs=engine in ("auto", "delta-rs"))
    if engine == "delta-rs" and gold.source is None:
        raise UnsupportedOperationError(
            f"delta-rs cannot read the Gold table of '{schema.name}' v{schema.version} "
            f"({gold.location}).",
            fix="sync it with engine='auto' or 'spark'.",
            group=schema.name,
        )
    if engine == "executors" and store.remote() is None:
        raise UnsupportedOperationError(
            f"The {store.backend} online store lives in this process: Spark's executors "
            "cannot write to it.",
            fix="sync it with engine='auto' or 'spark'.",
        )
    current = gold.version
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
    chosen = engine
    if start is not None:
        try:
            chosen = _incremental(gold, pusher, start, current, engine)
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
        chosen = _full(gold, pusher, current, engine)
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
            "engine": chosen,
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
        pusher.read_seconds,
        pusher.push_seconds,
        chosen,
    )
    logger.info(
        "online sync of {}@{} ({}, {}) to Delta version {}: {} written, {} older rejected, "
        "{} deleted, {:.2f}s",
        schema.name,
        schema.version,
        mode,
        chosen,
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
    _push_spark(pusher, frame, force=False, engine="spark", chunks=1)
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
    pusher.arrow(latest_arrow(rows, schema), force)
    return pusher.written, pusher.rejected


def last_sync(
    registry: Registry, store: OnlineStore, group: str | FeatureGroupSchema
) -> dict[str, Any] | None:
    """The watermark of the last sync of a group into a store, or None."""
    return registry.get_object(SYNC_KIND, watermark_key(_resolve(registry, group), store))


def _resolve(registry: Registry, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
    if isinstance(group, FeatureGroupSchema):
        return registry.get_group(group.name, group.version)
    name, _, version = str(group).partition("@")
    return registry.get_group(name, int(version) if version else None)


# -- the Gold table and the engine ------------------------------------------------------------


class _Gold:
    """A group's Gold table: its log (read once, by delta-rs where it can) and its readers."""

    def __init__(
        self,
        registry: Registry,
        schema: FeatureGroupSchema,
        spark: SparkSession | None,
        *,
        delta_rs: bool,
    ) -> None:
        self.registry = registry
        self.schema = schema
        self._spark = spark
        self.location: TableLocation = registry.gold_location(schema.name, schema.version)
        self.source = DeltaSource.open(self.location, schema) if delta_rs else None

    @cached_property
    def spark(self) -> SparkSession:
        return self._spark or self.registry.spark

    @cached_property
    def history(self) -> list[Commit]:
        if self.source is not None:
            return self.source.history()
        return sync_spark.history(self.spark, self.location, self.schema)

    @property
    def version(self) -> int:
        return self.source.version if self.source is not None else self.history[0].version

    @cached_property
    def size(self) -> int:
        """Bytes of the table's data now."""
        if self.source is not None:
            return self.source.size()
        return sync_spark.table_size(self.spark, self.location)

    def choose(self, engine: str, read_bytes: int | None, store: OnlineStore) -> str:
        """The engine of a read of about `read_bytes` of Delta data (None: unknown)."""
        if engine != "auto":
            return engine
        if read_bytes is not None and read_bytes <= DRIVER_BYTES:
            # Small enough for the driver: delta-rs where it reads the table, else Spark.
            return "delta-rs" if self.source is not None else "spark"
        remote = store.remote()
        if remote is not None and sync_spark.executors_ready(self.spark, remote):
            return "executors"
        return "spark"


def _full(gold: _Gold, pusher: _Pusher, current: int, engine: str) -> str:
    chosen = gold.choose(engine, gold.size, pusher.store)
    if chosen == "delta-rs":
        assert gold.source is not None
        source = gold.source
        latest = pusher.read(lambda: latest_arrow(source.rows(gold.schema, current), gold.schema))
        pusher.arrow(latest, False)
        return chosen
    frame = sync_spark.read(gold.spark, gold.location, version=current)
    _push_spark(pusher, frame, force=False, engine=chosen, chunks=_buckets(gold.size))
    return chosen


def _incremental(
    gold: _Gold, pusher: _Pusher, start: int | datetime, current: int, engine: str
) -> str:
    """Push the change feed from `start`; raises when the feed cannot be read."""
    schema = gold.schema
    keys = list(schema.entity_keys)
    commits = covered(gold.history, start)
    read_bytes = None
    # (a property change in the range may have turned the feed on or off: Spark checks that)
    if commits is not None and not any(c.operation.endswith("TBLPROPERTIES") for c in commits):
        removes = any(c.removes for c in commits)
        read_bytes = change_bytes(commits, gold.size if removes else 0)
    chosen = gold.choose(engine, read_bytes, pusher.store)
    deletes = commits is None or may_delete(commits)
    if chosen == "delta-rs":
        assert gold.source is not None
        source = gold.source
        upserts, removed = pusher.read(
            lambda: split_changes(source.changes(schema, start, current), schema)
        )
        pusher.arrow(pusher.read(lambda: latest_arrow(upserts, schema)), False)
        if removed.num_rows:
            # Rows were removed (overwrite, backfill, delete): what the table holds now for
            # those entities wins, even when it is older than what the store has.
            now = pusher.read(lambda: source.rows_of(schema, current, removed))
            pusher.arrow(latest_arrow(now, schema), True)
            gone = removed.join(now.select(keys), keys, join_type="left anti")
            pusher.delete([c.to_pylist() for c in gone.columns])
        return chosen
    spark = gold.spark
    upserts_frame, feed = sync_spark.changes(spark, gold.location, start, current)
    chunks = _buckets(gold.size if read_bytes is None else read_bytes)
    _push_spark(pusher, upserts_frame, force=False, engine=chosen, chunks=chunks)
    if not deletes:
        return chosen
    from pyspark.sql import functions as F

    deleted = feed.where(F.col("_change_type") == "delete").select(*keys).distinct()
    if not deleted.take(1):
        return chosen
    snapshot = sync_spark.read(spark, gold.location, version=current)
    replaced = snapshot.join(deleted, on=keys, how="left_semi")
    _push_spark(pusher, replaced, force=True, engine=chosen, chunks=chunks)
    gone = deleted.join(snapshot.select(*keys).distinct(), on=keys, how="left_anti")
    pusher.delete([c.to_pylist() for c in gone.toArrow().columns])
    return chosen


def _buckets(size_bytes: int) -> int:
    return sync_spark.buckets(size_bytes, CHUNK_BYTES)


def _push_spark(
    pusher: _Pusher, frame: DataFrame, *, force: bool, engine: str, chunks: int
) -> None:
    """The latest rows of a Spark frame into the store, from the executors or the driver."""
    schema, store = pusher.schema, pusher.store
    latest = latest_per_entity(frame, schema)
    remote = store.remote() if engine == "executors" else None
    if remote is None:
        pusher.read_seconds += sync_spark.push_from_driver(
            latest, schema, lambda table: pusher.arrow(table, force), chunks
        )
        return
    started = time.perf_counter()
    written, rejected, tasks, seconds = sync_spark.push_from_executors(
        latest, schema, remote, force
    )
    store.record_writes(written, rejected, tasks)
    pusher.written += written
    pusher.rejected += rejected
    pusher.read_seconds += time.perf_counter() - started
    pusher.push_seconds += seconds


class _Pusher:
    """Writes latest rows of one group into a store and counts what happened."""

    def __init__(self, store: OnlineStore, schema: FeatureGroupSchema, batch_rows: int) -> None:
        self.store = store
        self.schema = schema
        self.batch_rows = batch_rows
        self.written = 0
        self.rejected = 0
        self.deleted = 0
        self.read_seconds = 0.0
        self.push_seconds = 0.0

    def read(self, call: Callable[[], Any]) -> Any:
        """`call()`, its time counted as reading."""
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.read_seconds += time.perf_counter() - started

    def arrow(self, table: pa.Table, force: bool) -> None:
        started = time.perf_counter()
        written, rejected = self.store.write_arrow(
            self.schema, [table], force=force, batch_rows=self.batch_rows
        )
        self.push_seconds += time.perf_counter() - started
        self.written += written
        self.rejected += rejected

    def delete(self, key_columns: list[list[Any]]) -> None:
        """Remove entities (given as key columns) from the store."""
        if not key_columns or not key_columns[0]:
            return
        entities: list[Any] = (
            list(zip(*key_columns, strict=True)) if len(key_columns) > 1 else key_columns[0]
        )
        for first in range(0, len(entities), self.batch_rows):
            self.deleted += self.store.delete(
                self.schema, entities[first : first + self.batch_rows]
            )
