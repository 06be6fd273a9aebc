"""Materialize a group from its declared source, reading only what changed since the last run.

A table source with `incremental: true` is read through its Change Data Feed from the version
after the watermark (kept in the registry per group version) up to the table's current
version; the changes are netted, transformed and merged into Gold in one commit (deleted source
rows delete their Gold rows; when rows were only inserted, their Gold rows are appended instead,
with no MERGE). The first run, a changed source, `full=True`, a query-only source
or a feed that is not available (vacuumed, enabled later) recomputes the whole table instead.
The watermark moves only after the Gold commit, so a failed run leaves it where it was and a
re-run reads the same range again; merging the same changes twice gives the same table.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import FeatureStoreError, MaterializationError, SchemaValidationError
from featurelake.gold.merge_bounds import target_bounds
from featurelake.quality.freshness import MATERIALIZATION_RUN
from featurelake.registry import Lineage
from featurelake.registry.registry import group_key
from featurelake.scheduling import sources
from featurelake.schema import FeatureGroupSchema
from featurelake.schema.materialization import MaterializationSource
from featurelake.serving.store import FeatureStore
from featurelake.stores.materialized import WriteMode, WriteResult
from featurelake.times import event_time_range, rows_in_range

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

WATERMARK = "materialization_watermark"
SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass(frozen=True)
class MaterializationRun:
    """What one run did. `mode`: `incremental`, `full`, `up_to_date` (nothing new) or
    `windows` (an aggregation group's window values as of the slot)."""

    group: str
    version: int
    mode: str
    source: str
    from_version: int | None
    to_version: int | None
    rows_written: int
    gold_version: int | None
    started_at: str
    ended_at: str
    duration_seconds: float
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_write(
        cls,
        schema: FeatureGroupSchema,
        mode: str,
        source: str,
        result: WriteResult | None,
        *,
        started_at: datetime,
        started: float,
        from_version: int | None = None,
        to_version: int | None = None,
        fallback: str | None = None,
    ) -> MaterializationRun:
        """The run that wrote `result` (None: nothing), started at `started_at` (`started`:
        its perf_counter)."""
        return cls(
            group=schema.name,
            version=schema.version,
            mode=mode,
            source=source,
            from_version=from_version,
            to_version=to_version,
            rows_written=result.rows_written if result else 0,
            gold_version=result.delta_version if result else None,
            started_at=started_at.isoformat(),
            ended_at=_now().isoformat(),
            duration_seconds=round(time.perf_counter() - started, 3),
            fallback_reason=fallback,
        )


def watermark(store: FeatureStore, group: str | FeatureGroupSchema) -> dict[str, Any]:
    """The last source version merged into the group's Gold table ({} before the first run)."""
    schema = store.resolve_group(group)
    return store.registry.get_object(WATERMARK, group_key(schema.name, schema.version)) or {}


def materialize_from_source(
    store: FeatureStore,
    group: str | FeatureGroupSchema,
    *,
    full: bool = False,
    source: MaterializationSource | None = None,
    slot: datetime | None = None,
    job: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> MaterializationRun:
    """Bring the group's Gold table up to date with its source (see the module docstring).

    `source` overrides the schema's; `slot` (a scheduler's cron slot) is recorded with the run.
    With `start` and `end`, recompute only the Gold rows with `start <= event time < end` from
    the source's current rows in that range (mode `range`; an aggregation group's values as of
    each day in it); the rest of the table and the watermark stay.
    Every run, failed or not, is recorded in the registry as a `materialization_run` event.
    """
    schema = store.resolve_group(group)
    chosen = source or schema.source
    if chosen is None and schema.event_source is None:
        raise MaterializationError(
            f"Group '{schema.name}' v{schema.version} declares no source to materialize from.",
            fix="add 'source: {table: <Silver Delta table>}' (or a query) to the group's YAML "
            "and run featurelake apply.",
            group=schema.name,
        )
    key = group_key(schema.name, schema.version)
    time_range = None
    if start is not None or end is not None:
        time_range = event_time_range(start, end, what="materialization")
    started_at = _now()
    started = time.perf_counter()
    try:
        if time_range is not None:
            run = _run_range(store, schema, chosen, time_range, started_at=started_at, job=job)
        elif chosen is None:
            run = _run_windows(store, schema, as_of=slot or started_at, started_at=started_at)
        else:
            run = _run(store, schema, chosen, full=full, started_at=started_at, job=job)
    except Exception as error:
        store.registry.append_event(
            MATERIALIZATION_RUN,
            key,
            {
                "outcome": FAILED,
                "slot": slot.isoformat() if slot else None,
                "started_at": started_at.isoformat(),
                "ended_at": _now().isoformat(),
                "duration_seconds": round(time.perf_counter() - started, 3),
                "error": str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
            },
        )
        raise
    store.registry.append_event(
        MATERIALIZATION_RUN,
        key,
        {**run.to_dict(), "outcome": SUCCEEDED, "slot": slot.isoformat() if slot else None},
    )
    return run


def _run_windows(
    store: FeatureStore,
    schema: FeatureGroupSchema,
    *,
    as_of: datetime,
    started_at: datetime,
) -> MaterializationRun:
    """An aggregation group: its window values as of `as_of` (the slot) for every entity."""
    assert schema.event_source is not None
    started = time.perf_counter()
    result = store.materialize_aggregations(schema, as_of)
    source = f"{schema.event_source.kind}:{schema.event_source.name}"
    return MaterializationRun.of_write(
        schema, "windows", source, result, started_at=started_at, started=started
    )


def _run(
    store: FeatureStore,
    schema: FeatureGroupSchema,
    source: MaterializationSource,
    *,
    full: bool,
    started_at: datetime,
    job: str | None,
) -> MaterializationRun:
    spark = store.spark
    key = group_key(schema.name, schema.version)
    started = time.perf_counter()
    lineage = Lineage(
        sources=tuple(s for s in (source.table,) if s),
        job=job or "featurelake.scheduling",
        query=source.query,
    )
    identity = _identity(source)

    def finish(
        mode: str,
        start: int | None,
        end: int | None,
        result: WriteResult | None,
        fallback: str | None = None,
    ) -> MaterializationRun:
        return MaterializationRun.of_write(
            schema,
            mode,
            identity,
            result,
            started_at=started_at,
            started=started,
            from_version=start,
            to_version=end,
            fallback=fallback,
        )

    if source.table is None:  # a query alone: recompute in full
        frame = sources.transform_rows(spark, source, None)
        written = store.write_features(schema, frame, WriteMode.OVERWRITE, lineage=lineage)
        return finish("full", None, None, written)

    location = sources.source_location(source.table)
    current = sources.current_version(spark, location, schema.name)
    mark = store.registry.get_object(WATERMARK, key) or {}
    start: int | None = None
    if not full and source.incremental and mark.get("source") == identity:
        start = int(mark["source_version"]) + 1
    if start is not None and start > current:
        return finish("up_to_date", start, current, None)
    result: WriteResult | None = None
    mode = "full"
    fallback = None
    if start is not None:
        try:
            changes = sources.read_net_changes(spark, location, start, current, source.options)
            try:
                added, removed = changes.sizes()
                if not added and not removed:
                    result = None
                elif not removed:
                    result = _append_inserts(store, schema, source, changes.added, lineage)
                else:
                    result = _merge_changes(
                        store, schema, source, changes.added, changes.removed, lineage
                    )
            finally:
                changes.release()
            mode = "incremental"
        except FeatureStoreError:
            raise
        except Exception as error:
            fallback = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            if not _feed_unavailable(fallback):
                raise
            logger.warning(
                "materializing {}: the change feed of {} from version {} is not available ({}); "
                "recomputing in full",
                key,
                source.table,
                start,
                fallback,
            )
    if mode == "full":
        snapshot = sources.read_snapshot(spark, location, current, source.options)
        frame = sources.transform_rows(spark, source, snapshot)
        result = store.write_features(schema, frame, WriteMode.OVERWRITE, lineage=lineage)
    store.registry.put_object(
        WATERMARK,
        key,
        {
            "source": identity,
            "source_version": current,
            "gold_version": result.delta_version if result else None,
            "at": _now().isoformat(),
        },
    )
    run = finish(mode, start, current, result, fallback)
    logger.info(
        "materialized {} ({}) from {} versions {}..{}: {} rows, Gold version {}",
        key,
        mode,
        source.table,
        start,
        current,
        run.rows_written,
        run.gold_version,
    )
    return run


def _run_range(
    store: FeatureStore,
    schema: FeatureGroupSchema,
    source: MaterializationSource | None,
    time_range: tuple[datetime, datetime],
    *,
    started_at: datetime,
    job: str | None,
) -> MaterializationRun:
    """Replace the Gold rows in `time_range` by what the source gives for it now."""
    started = time.perf_counter()
    start, end = time_range
    current: int | None = None
    if source is None:  # an aggregation group: its values as of each day of the range
        assert schema.event_source is not None
        identity = f"{schema.event_source.kind}:{schema.event_source.name}"
        result = store.backfill_aggregations(schema, start, end)
    else:
        identity = _identity(source)
        rows = None
        if source.table is not None:
            location = sources.source_location(source.table)
            current = sources.current_version(store.spark, location, schema.name)
            rows = sources.read_snapshot(store.spark, location, current, source.options)
        frame = sources.transform_rows(store.spark, source, rows)
        in_range = rows_in_range(frame, schema.timestamp_key, time_range)
        lineage = Lineage(
            sources=tuple(s for s in (source.table,) if s),
            job=job or "featurelake.scheduling",
            query=source.query,
        )
        result = store.backfill(schema, in_range, start, end, lineage=lineage)
    return MaterializationRun.of_write(
        schema,
        "range",
        identity,
        result,
        started_at=started_at,
        started=started,
        to_version=current,
    )


def _append_inserts(
    store: FeatureStore,
    schema: FeatureGroupSchema,
    source: MaterializationSource,
    added: DataFrame,
    lineage: Lineage,
) -> WriteResult:
    """Source rows were only inserted: their Gold rows are appended, with no MERGE. A rebuild
    would keep every Gold row already there and add exactly these, so the table stays equal to
    one. The batch is checked for keys + event times given twice, as a merge batch is.

    Rows whose key + event time Gold already holds are left out, so re-running the range after
    a crash between the Gold commit and the watermark appends nothing twice; Gold is read only
    within the batch's key and time bounds (new events usually lie beyond every file's)."""
    upserts = sources.transform_rows(store.spark, source, added)
    keys = [*schema.entity_keys, schema.timestamp_key]
    if all(k in upserts.columns for k in keys):
        _check_unique_keys(schema, upserts, keys)
        bounds = target_bounds(upserts, keys)
        if bounds:
            held = store.read_table(schema).alias("t").where(" AND ".join(bounds)).select(*keys)
            upserts = upserts.join(held, on=keys, how="left_anti")
    return store.write_features(schema, upserts, WriteMode.APPEND, lineage=lineage)


def _check_unique_keys(schema: FeatureGroupSchema, rows: DataFrame, keys: list[str]) -> None:
    from pyspark.sql import functions as F

    twice = rows.groupBy(*keys).count().where(F.col("count") > 1).drop("count").take(1)
    if twice:
        raise SchemaValidationError(
            f"The changes to the source of group '{schema.name}' give the entity key + "
            f"timestamp {tuple(twice[0])} more than once ({keys} must be unique within a "
            "merge batch).",
            fix="keep one row per entity key and event time in the source (or its query).",
            group=schema.name,
        )


def _merge_changes(
    store: FeatureStore,
    schema: FeatureGroupSchema,
    source: MaterializationSource,
    added: DataFrame,
    removed: DataFrame,
    lineage: Lineage,
) -> WriteResult | None:
    spark = store.spark
    upserts = sources.transform_rows(spark, source, added)
    keys = [*schema.entity_keys, schema.timestamp_key]
    gone = sources.transform_rows(spark, source, removed)
    missing = [k for k in keys if k not in gone.columns]
    if missing:
        raise MaterializationError(
            f"The source of group '{schema.name}' does not give the column(s) {missing} for "
            "removed rows.",
            fix="keep the entity keys and the event time in the query / transform output.",
            group=schema.name,
        )
    deletes = gone.select(*keys)
    if not upserts.take(1) and not deletes.take(1):
        return None
    return store.apply_changes(schema, upserts, deletes, lineage=lineage)


def _identity(source: MaterializationSource) -> str:
    """What the watermark belongs to: a different table, query or transform starts over."""
    return "|".join(str(part) for part in (source.table, source.query, source.transform))


_FEED_MARKERS = (
    "DELTA_MISSING_CHANGE_DATA",
    "change data was not recorded",
    "DELTA_CHANGE_DATA_FEED_NOT_ENABLED",
    "Change Data Feed",
    "DELTA_FILE_NOT_FOUND",
    "VersionNotFoundException",
    "DELTA_VERSIONS_NOT_CONTIGUOUS",
    "FileNotFoundException",
)


def _feed_unavailable(message: str) -> bool:
    return any(marker.lower() in message.lower() for marker in _FEED_MARKERS)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
