"""Structured Streaming into a group: each micro-batch validated, merged into Gold, pushed online.

`start_stream(store, group, source, trigger=...)` reads a Delta table (or Kafka, or any
streaming format, with the reader options passed through), applies the source's query and
Python transform to each micro-batch, and writes it with the same validation as every write
(`store.write_features(..., mode="merge")`, upsert on entity keys + event time). When an
online store is given or enabled in the config, the latest row per entity of the batch is
pushed to it. A batch of up to `driver_max_rows` rows is read once into Arrow, checked on the
driver and pushed online while it is merged into Gold (`scheduling.stream_driver`); a larger
one is checked inside the MERGE and pushed after it. The checkpoint lives under the store.

Exactly once: a micro-batch that fails or is killed before Spark records it in the checkpoint
is read again on restart; its merge then finds its own rows and changes nothing, and online
writes only keep newer events. A batch that breaks the schema stops the stream with the
`SchemaValidationError` (nothing of it is written); fix the source and start again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake import storage
from featurelake.errors import ConfigurationError, MaterializationError, first_line
from featurelake.online import OnlineStore, create_online_store
from featurelake.online.sync import push_latest, push_latest_arrow
from featurelake.registry import Lineage, side_location
from featurelake.scheduling import sources, stream_driver
from featurelake.scheduling.stream_driver import DRIVER_MAX_ROWS
from featurelake.schema import FeatureGroupSchema, SqlType
from featurelake.schema.materialization import MaterializationSource
from featurelake.serving.store import FeatureStore
from featurelake.stores.materialized import MaterializedFeatureStore, WriteMode, WriteResult

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.streaming import StreamingQuery

STOP_MARKER = "_featurelake_stop"
AVAILABLE_NOW = "available_now"


@dataclass(frozen=True)
class StreamBatch:
    """One micro-batch written: Gold rows written and version, online writes, duration."""

    batch_id: int
    rows_written: int
    gold_version: int | None
    online_written: int
    duration_seconds: float
    online_seconds: float | None = None
    """Seconds from the batch's start until its rows were served online (None: no online
    store)."""
    engine: str = "spark"
    """How the batch was written: `driver+delta-rs` or `driver+spark` (collected once, checked
    in Arrow, pushed online during the Gold MERGE) or `spark` (a large batch, checked inside
    the Gold MERGE, pushed after it)."""


def checkpoint_path(store: FeatureStore, schema: FeatureGroupSchema) -> str:
    """Where a group version's stream keeps its checkpoint: `{storage_path}/_checkpoints/...`."""
    location = side_location(store.config, "checkpoints", f"{schema.name}_v{schema.version}")
    if location.path is None:
        raise ConfigurationError(
            f"The store keeps tables in a catalog, so group '{schema.name}' has no default "
            "checkpoint folder.",
            fix="pass checkpoint='<a path Spark can write>' to start_stream (--checkpoint).",
        )
    return location.path


def _trigger(trigger: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(trigger, Mapping):
        return dict(trigger)
    if trigger == AVAILABLE_NOW:
        return {"availableNow": True}
    if trigger == "once":
        return {"once": True}
    if isinstance(trigger, str) and trigger.strip():
        return {"processingTime": trigger}
    raise ConfigurationError(
        f"The stream trigger {trigger!r} is not understood.",
        fix="use 'available_now', an interval such as '10 seconds', or {'processingTime': ...}.",
    )


@dataclass(eq=False, repr=False)
class FeatureStream:
    """A running stream of one group; `stop()`, `await_termination()`, `batches`."""

    store: FeatureStore
    schema: FeatureGroupSchema
    source: MaterializationSource
    _: KW_ONLY
    source_format: str
    online: OnlineStore | None
    checkpoint: str
    on_batch: Callable[[StreamBatch], None] | None
    driver_max_rows: int = DRIVER_MAX_ROWS
    batches: list[StreamBatch] = field(default_factory=list, init=False)
    error: BaseException | None = field(default=None, init=False)
    query: StreamingQuery | None = field(default=None, init=False)
    _watcher: threading.Thread | None = field(default=None, init=False)
    _bound: MaterializedFeatureStore | None = field(default=None, init=False)
    _key_types: dict[str, SqlType] | None = field(default=None, init=False)

    # -- the micro-batch -----------------------------------------------------------------------

    def process(self, batch: DataFrame, batch_id: int) -> None:
        """Validate, push online, merge into Gold (Spark calls this for each micro-batch)."""
        started = time.perf_counter()
        try:
            rows = sources.transform_rows(batch.sparkSession, self.source, batch)
            # The batch belongs to a session of its own: write through it.
            session = batch.sparkSession
            if self._bound is None or self._bound.spark is not session:
                self._bound = _bound_store(self.store, session, self.driver_max_rows)
            small = self._driver_rows(rows)
            if small is not None:
                result, online_written, online_at = self._write_small(small, batch_id, started)
            else:
                result, online_written, online_at = self._write_spark(rows, batch_id, started)
            done = StreamBatch(
                batch_id,
                result.rows_written,
                result.delta_version,
                online_written,
                round(time.perf_counter() - started, 3),
                online_seconds=online_at,
                engine=result.engine if small is None else f"driver+{result.engine}",
            )
            self.batches.append(done)
            logger.info(
                "stream {} batch {}: {} rows, Gold version {} ({}), {} online after {} s",
                self.schema.name,
                batch_id,
                result.rows_written,
                result.delta_version,
                done.engine,
                online_written,
                online_at,
            )
            if self.on_batch is not None:
                self.on_batch(done)
        except BaseException as error:
            self.error = error
            logger.error("stream {} batch {} failed: {}", self.schema.name, batch_id, error)
            raise

    def _lineage(self, batch_id: int) -> Lineage:
        return Lineage(
            sources=tuple(s for s in (self.source.table,) if s),
            job=f"stream batch {batch_id}",
            query=self.source.query,
        )

    def _driver_rows(self, rows: DataFrame) -> pa.Table | None:
        """The batch as Arrow when it takes the driver path (small, no batch hook that must
        see it on Spark), else None."""
        assert self._bound is not None
        if self.driver_max_rows <= 0 or _blocking_hooks(self._bound, self.schema):
            return None
        return stream_driver.collect_small(rows, self.driver_max_rows)

    def _write_small(
        self, small: pa.Table, batch_id: int, started: float
    ) -> tuple[WriteResult, int, float | None]:
        """Checks in Arrow, then the online push (in a thread of its own) and the Gold MERGE
        of the same rows at once."""
        bound = self._bound
        assert bound is not None
        location = bound.location(self.schema)
        if self._key_types is None:
            self._key_types = stream_driver.existing_key_types(bound.spark, location, self.schema)
        checked = stream_driver.checked_rows(small, self.schema, self._key_types)
        push = None if self.online is None else _Push(self.online, self.schema, checked, started)
        try:
            data = stream_driver.gold_input(
                bound.spark,
                location,
                self.schema,
                checked,
                small_write_max_rows=bound.config.small_write_max_rows,
                hooks=bound.batch_hooks,
                deletion_vectors=bound.config.gold_deletion_vectors,
            )
            result = bound.write_features(
                self.schema, data, WriteMode.MERGE, lineage=self._lineage(batch_id)
            )
        except BaseException:
            if push is not None:
                push.wait()  # the Gold error is the one raised
            raise
        online_written, online_at = push.result() if push is not None else (0, None)
        if not self._key_types:  # the first batch created the table: its key types are set now
            self._key_types = None
        return result, online_written, online_at

    def _write_spark(
        self, rows: DataFrame, batch_id: int, started: float
    ) -> tuple[WriteResult, int, float | None]:
        """A large batch: validated inside the Gold MERGE, then pushed online by Spark."""
        assert self._bound is not None
        result = self._bound.write_features(
            self.schema, rows, WriteMode.MERGE, lineage=self._lineage(batch_id)
        )
        online_written, online_at = 0, None
        if self.online is not None:
            online_written, _ = push_latest(self.online, self.schema, rows)
            online_at = round(time.perf_counter() - started, 3)
        return result, online_written, online_at

    # -- control -------------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.query is not None and self.query.isActive

    def stop(self) -> None:
        """Stop after the running micro-batch (its checkpoint stays consistent)."""
        if self.query is not None:
            self.query.stop()

    def await_termination(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end (True) or `timeout` seconds (False).

        A micro-batch that failed raises its own error here (e.g. SchemaValidationError).
        """
        assert self.query is not None
        try:
            if timeout is None:
                self.query.awaitTermination()
                finished = True
            else:
                finished = bool(self.query.awaitTermination(max(1, math.ceil(timeout))))
        except Exception as error:
            if isinstance(self.error, Exception):
                raise self.error from None
            raise MaterializationError(
                f"The stream of group '{self.schema.name}' stopped: {first_line(error)}",
                fix="correct the cause above and start the stream again; it resumes from its "
                f"checkpoint {self.checkpoint}.",
                group=self.schema.name,
            ) from error
        return finished

    def _watch_stop_marker(self) -> None:
        marker = f"{self.checkpoint.rstrip('/')}/{STOP_MARKER}"
        while self.is_active:
            if storage.object_exists(marker):
                logger.info("stream {}: stop requested", self.schema.name)
                storage.delete_object(marker)
                self.stop()
                return
            time.sleep(0.5 if storage.is_local(marker) else 2.0)


def start_stream(
    store: FeatureStore,
    group: str | FeatureGroupSchema,
    source: str | MaterializationSource | None = None,
    *,
    trigger: str | Mapping[str, Any] = "10 seconds",
    source_format: str = "delta",
    options: Mapping[str, str] | None = None,
    online: OnlineStore | None = None,
    checkpoint: str | None = None,
    on_batch: Callable[[StreamBatch], None] | None = None,
    driver_max_rows: int = DRIVER_MAX_ROWS,
) -> FeatureStream:
    """Start streaming `source` into the group (see the module docstring).

    `source`: a Delta path or table name (read through the group's declared query and
    transform, if any), a MaterializationSource (table + query / transform), or None for the
    group's declared source. `source_format`: `delta` (default), `kafka` or
    any streaming source, with `options` passed to the reader (e.g. `kafka.bootstrap.servers`,
    `subscribe`, `maxFilesPerTrigger`); give a query or transform that turns its records into
    the group's columns. `trigger`: `"available_now"` (process what is there, then stop), an
    interval such as `"10 seconds"`, or Spark's trigger keywords as a dict. `online`: the store
    to push to; by default the configured one when `enable_online_store` is on.
    `driver_max_rows`: micro-batches of up to this many rows are collected once, checked on
    the driver in Arrow and pushed online during their Gold MERGE (`stream_driver`); larger
    ones are checked inside a Spark MERGE and pushed after it (0: always so).
    """
    schema = store.resolve_group(group)
    chosen = _source(schema, source)
    if online is None and store.config.enable_online_store:
        online = create_online_store(store.config, store.registry)
    folder = checkpoint or checkpoint_path(store, schema)
    stream = FeatureStream(
        store,
        schema,
        chosen,
        source_format=source_format,
        online=online,
        checkpoint=folder,
        on_batch=on_batch,
        driver_max_rows=driver_max_rows,
    )
    reader = store.spark.readStream.format(source_format)
    for key, value in {**chosen.options, **(options or {})}.items():
        reader = reader.option(key, value)
    if source_format == "delta":
        assert chosen.table is not None
        location = sources.source_location(chosen.table)
        frame = (
            reader.table(location.table_name) if location.table_name else reader.load(location.path)
        )
    else:
        frame = reader.load()
    watched = storage.is_local(folder) or storage.is_object_store(folder)
    if watched:
        storage.delete_object(f"{folder.rstrip('/')}/{STOP_MARKER}")
    stream.query = (
        frame.writeStream.foreachBatch(stream.process)
        .option("checkpointLocation", folder)
        .queryName(f"featurelake_{schema.name}_v{schema.version}")
        .trigger(**_trigger(trigger))
        .start()
    )
    if watched:
        stream._watcher = threading.Thread(
            target=stream._watch_stop_marker, name="featurelake-stream-stop", daemon=True
        )
        stream._watcher.start()
    logger.info(
        "stream of {} v{} started from {} ({}), checkpoint {}",
        schema.name,
        schema.version,
        chosen.table or source_format,
        trigger,
        folder,
    )
    return stream


class _Push:
    """The latest rows of a checked batch pushed online in a thread of its own."""

    def __init__(
        self, online: OnlineStore, schema: FeatureGroupSchema, rows: pa.Table, started: float
    ) -> None:
        self._args = (online, schema, rows)
        self._started = started
        self._written = 0
        self._at: float | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="featurelake-stream-push")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._written, _ = push_latest_arrow(*self._args)
            self._at = round(time.perf_counter() - self._started, 3)
        except BaseException as error:
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> tuple[int, float | None]:
        """(rows written, seconds from the batch's start): waits, raises the push's error."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._written, self._at


def _bound_store(
    store: FeatureStore, session: Any, driver_max_rows: int
) -> MaterializedFeatureStore:
    """The store on the micro-batch's session; its delta-rs small writes take batches of up to
    `driver_max_rows` rows (the checked Arrow batch of the driver path), unless the config
    turns small writes off (`small_write_max_rows: 0`)."""
    limit = store.config.small_write_max_rows
    if limit <= 0 or limit >= driver_max_rows:
        return store.on_session(session)
    return store.on_session(session, store.config.replace(small_write_max_rows=driver_max_rows))


def _blocking_hooks(store: MaterializedFeatureStore, schema: FeatureGroupSchema) -> bool:
    """Whether a batch hook of the store (e.g. a quality check that quarantines rows) must see
    each batch as a Spark DataFrame before it is written: then no batch takes the driver path,
    whose online push comes before the Gold write."""
    for hook in store.batch_hooks:
        passes = getattr(hook, "passes_through", None)
        if passes is None or not passes(schema, WriteMode.MERGE.value):
            return True
    return False


def request_stop(
    store: FeatureStore,
    group: str | FeatureGroupSchema,
    checkpoint: str | None = None,
) -> str:
    """Ask a stream of the group running in another process to stop after its current batch
    (a marker file or object in its checkpoint folder, which the stream watches)."""
    schema = store.resolve_group(group)
    folder = (checkpoint or checkpoint_path(store, schema)).rstrip("/")
    if not storage.folder_exists(folder):
        raise ConfigurationError(
            f"No stream of group '{schema.name}' v{schema.version} has run on this store "
            f"(no checkpoint at {folder}).",
            fix="start one first: featurelake stream start GROUP.",
        )
    marker = f"{folder}/{STOP_MARKER}"
    storage.put_object(marker)
    return marker


def _source(
    schema: FeatureGroupSchema, source: str | MaterializationSource | None
) -> MaterializationSource:
    if isinstance(source, MaterializationSource):
        return source
    if isinstance(source, str):
        declared = schema.source
        if declared is None or declared.table is None:
            return MaterializationSource(table=source)
        # Another table of the same shape: keep the declared query, transform and options.
        return MaterializationSource(
            table=source,
            query=declared.query,
            transform=declared.transform,
            options=declared.options,
        )
    if schema.source is None:
        raise ConfigurationError(
            f"Group '{schema.name}' declares no source and none was given to stream from.",
            fix="pass a source (a Delta path or table) or declare 'source' in the group's YAML.",
        )
    return schema.source
