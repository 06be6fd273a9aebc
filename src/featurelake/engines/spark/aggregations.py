"""Aggregation groups offline: their events, their values in training sets, and materialization.

An aggregation group (`FeatureGroupSchema` with `source` and `aggregations`) has no rows of its
own to join: for each entity row `(keys, t)` every feature is computed over its window
`t - w < event_ts <= t` from the source's events (`featurelake.engines.spark.windows`, one pass for
all functions and windows of the group). Training sets do this for their entity rows.

Materializing computes the same values as of one time for every entity of the source (or as of
several times for a backfill) and writes them to the group's Gold table, keyed by entity and
that time; the online store serves them from there (sync), and each value carries the time it
was computed as of, so its age is known. Because both paths call the same computation, a value
served online equals the training-set value for the same entity at the materialization time.

Events come from a registered group's Gold table (read at one Delta version, kept in the
training set's manifest), a catalog table or a Delta path (read as they are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from featurelake.engines.spark import tiles
from featurelake.engines.spark.tiles import TileRefresh, TileSpec
from featurelake.engines.spark.windows import TILE_END, WindowOutput, window_aggregates
from featurelake.errors import MaterializationError, SchemaValidationError
from featurelake.gold import delta_ops
from featurelake.registry import TableLocation, side_location
from featurelake.schema import FeatureGroupSchema, parse_duration
from featurelake.times import event_time_range, spark_utc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.engines.spark.sources import FeatureFrameSource, TableRead


def is_aggregation_group(schema: FeatureGroupSchema) -> bool:
    return bool(schema.aggregations)


def window_outputs(
    schema: FeatureGroupSchema,
    features: Sequence[str],
    names: Mapping[tuple[str, str], str] | None = None,
) -> list[WindowOutput]:
    """The window computations behind `features` of an aggregation group, named as asked."""
    wanted = set(features)
    outputs = []
    for aggregation in schema.aggregations:
        for feature, window in aggregation.outputs():
            if feature in wanted:
                outputs.append(
                    WindowOutput(
                        name=(names or {}).get((schema.name, feature), feature),
                        column=aggregation.column,
                        function=aggregation.function,
                        window=window,
                        filter=aggregation.filter,
                        result_type=aggregation.result_type.simple_string(),
                    )
                )
    return outputs


@dataclass(frozen=True)
class EventSource:
    """The events of an aggregation group, read at one Delta version when they have one."""

    frame: DataFrame
    event_time: str
    read: TableRead | None
    """The Gold read behind a registered group source (kept in training-set manifests)."""
    location: TableLocation | None
    version: int | None


def source_events(
    store: FeatureFrameSource, schema: FeatureGroupSchema, version: int | None = None
) -> EventSource:
    """The events of an aggregation group: a registered group's Gold table (at `version`, or
    its current one), a catalog table or a Delta path (at their current version)."""
    source = schema.event_source
    if source is None:
        raise SchemaValidationError(
            f"Group '{schema.name}' is not an aggregation group.",
            fix="declare 'event_source' and 'aggregations' in the group schema.",
        )
    if source.kind == "group":
        name, _, pinned = source.name.partition("@")
        events_schema = store.registry.get_group(name, int(pinned) if pinned else None)
        frame, read = store.group_frame(
            events_schema, list(events_schema.feature_names), version=version
        )
        location = None
        if read is not None:
            location = store.registry.gold_location(events_schema.name, events_schema.version)
        return EventSource(
            frame,
            events_schema.timestamp_key,
            read,
            location,
            read.delta_version if read is not None else None,
        )
    if source.kind == "table":
        location = TableLocation(table_name=source.name)
    else:
        location = TableLocation(path=source.name)
    delta_version = tiles.source_version(store.spark, location)
    try:
        if delta_version is not None:
            frame = delta_ops.read(store.spark, location, version=delta_version)
        elif source.kind == "table":
            frame = store.spark.read.table(source.name)
        else:
            frame = store.spark.read.format("delta").load(source.name)
        frame.schema  # noqa: B018 - a missing table fails here, with its name
    except Exception as error:
        raise MaterializationError(
            f"The source {source.kind} '{source.name}' of aggregation group '{schema.name}' "
            f"cannot be read: {str(error).strip().splitlines()[0]}",
            fix="create the table, or correct 'event_source' in the group schema.",
            group=schema.name,
        ) from error
    return EventSource(spark_utc(frame), schema.timestamp_key, None, location, delta_version)


def tile_spec(
    store: FeatureFrameSource, schema: FeatureGroupSchema, events: EventSource
) -> TileSpec:
    """Where and how the tiles of an aggregation group version are kept."""
    outputs = tuple(window_outputs(schema, schema.feature_names))
    return TileSpec(
        location=side_location(store.config, "tiles", f"{schema.name}_v{schema.version}"),
        keys=tuple(schema.entity_keys),
        event_time=events.event_time,
        outputs=outputs,
        size=tiles.tile_size([o.window for o in outputs]),
        what=f"aggregation group '{schema.name}'",
    )


def join_aggregations(
    store: FeatureFrameSource,
    entity_df: DataFrame,
    schema: FeatureGroupSchema,
    features: Sequence[str],
    entity_time: str,
    names: Mapping[tuple[str, str], str] | None = None,
    *,
    version: int | None = None,
) -> tuple[DataFrame, TableRead | None]:
    """`entity_df` with the group's `features` as of each row's `entity_time` (from the
    group's tiles when they cover the source version read, else from the events)."""
    events = source_events(store, schema, version)
    spec = tile_spec(store, schema, events)
    current = tiles.current_tiles(store.spark, spec, events.version, events.location)
    result = window_aggregates(
        entity_df,
        events.frame,
        schema.entity_keys,
        events.event_time,
        entity_time,
        window_outputs(schema, features, names),
        what=f"aggregation group '{schema.name}'",
        tiles=current,
    )
    return result, events.read


def refresh_tiles(
    store: FeatureFrameSource, schema: FeatureGroupSchema, events: EventSource | None = None
) -> TileRefresh | None:
    """Bring the group's tiles up to its source's current version (`events`: the source as
    `source_events` read it, read here when not given). None: the source has no Delta version,
    so no tiles."""
    events = events or source_events(store, schema)
    if events.location is None or events.version is None:
        return None
    spec = tile_spec(store, schema, events)
    return tiles.refresh_tiles(store.spark, spec, events.location, events.version, events.frame)


def values_as_of(
    store: FeatureFrameSource, schema: FeatureGroupSchema, times: Sequence[datetime]
) -> DataFrame:
    """Every feature of the group for every entity of its source, as of each of `times`: keys,
    the group's timestamp key (the time), features. The group's tiles are refreshed first and
    read for every tile no time falls inside."""
    from pyspark.sql import functions as F

    events = source_events(store, schema)
    refresh_tiles(store, schema, events)
    keys = list(schema.entity_keys)
    missing = [k for k in keys if k not in events.frame.columns]
    if missing:
        raise MaterializationError(
            f"The events of aggregation group '{schema.name}' have no key column(s) {missing}.",
            fix="declare entity keys that are columns of the source.",
            group=schema.name,
        )
    spec = tile_spec(store, schema, events)
    current = tiles.current_tiles(store.spark, spec, events.version, events.location)
    known = F.lit(True)
    for key in keys:
        known = known & F.col(f"`{key}`").isNotNull()
    event_time = F.col(f"`{events.event_time}`")
    latest = max(times)
    if current is None:
        entity_keys = events.frame.where(known & (event_time <= F.lit(latest))).select(*keys)
    else:  # keys of the tiles before the last time's tile, and of the events in it
        size = F.lit(spec.size // timedelta(microseconds=1))
        latest_us = F.unix_micros(F.lit(latest))
        boundary = F.timestamp_micros(latest_us - F.pmod(latest_us, size))
        before = current.frame.where(F.col(TILE_END) <= boundary).select(*keys)
        inside = events.frame.where(
            known & (event_time > boundary) & (event_time <= F.lit(latest))
        ).select(*keys)
        entity_keys = before.unionByName(inside)
    entities = entity_keys.distinct().crossJoin(
        store.spark.createDataFrame([(t,) for t in times], f"`{schema.timestamp_key}` timestamp")
    )
    result = window_aggregates(
        entities,
        events.frame,
        keys,
        events.event_time,
        schema.timestamp_key,
        window_outputs(schema, schema.feature_names),
        what=f"aggregation group '{schema.name}'",
        tiles=current,
    )
    return result.select(*keys, schema.timestamp_key, *schema.feature_names)


def snapshot_times(
    schema: FeatureGroupSchema, start: datetime, end: datetime, every: str | timedelta
) -> list[datetime]:
    """The times `start`, `start + every`, ... before `end` of a backfill of the group."""
    step = parse_duration(every, what="backfill step 'every'")
    start, end = event_time_range(start, end, what="backfill")
    assert step is not None
    times = []
    moment = start
    while moment < end:
        times.append(moment)
        moment += step
    if len(times) > 100_000:
        raise MaterializationError(
            f"Backfilling '{schema.name}' from {start} to {end} every {every} makes "
            f"{len(times)} snapshots.",
            fix="use a longer step (every=...) or a shorter range.",
            group=schema.name,
        )
    return times


def require_aggregation_group(schema: FeatureGroupSchema) -> FeatureGroupSchema:
    """`schema`, or a MaterializationError when it declares no aggregations."""
    if not is_aggregation_group(schema):
        raise MaterializationError(
            f"Group '{schema.name}' has no aggregations to compute.",
            fix="write its rows with store.write_features; materialize_aggregations is for "
            "groups declaring 'event_source' and 'aggregations'.",
            group=schema.name,
        )
    return schema
