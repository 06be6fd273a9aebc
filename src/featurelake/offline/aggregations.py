"""Aggregation groups offline: their events, their values in training sets, and materialization.

An aggregation group (`FeatureGroupSchema` with `source` and `aggregations`) has no rows of its
own to join: for each entity row `(keys, t)` every feature is computed over its window
`t - w < event_ts <= t` from the source's events (`featurelake.offline.windows`, one pass for
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
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from featurelake.errors import MaterializationError, SchemaValidationError
from featurelake.offline.windows import WindowOutput, window_aggregates
from featurelake.schema import FeatureGroupSchema, parse_duration

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from featurelake.offline.materialized import MaterializedFeatureStore, WriteResult
    from featurelake.offline.training import FeatureFrameSource, TableRead


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


def source_events(
    store: FeatureFrameSource, schema: FeatureGroupSchema, version: int | None = None
) -> tuple[DataFrame, str, TableRead | None]:
    """The events of an aggregation group, their event-time column, and the Delta read behind
    them (for a registered group source; None for a table or path)."""
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
        return frame, events_schema.timestamp_key, read
    try:
        if source.kind == "table":
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
    return frame, schema.timestamp_key, None


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
    """`entity_df` with the group's `features` as of each row's `entity_time`."""
    events, event_time, read = source_events(store, schema, version)
    result = window_aggregates(
        entity_df,
        events,
        schema.entity_keys,
        event_time,
        entity_time,
        window_outputs(schema, features, names),
        what=f"aggregation group '{schema.name}'",
    )
    return result, read


def values_as_of(
    store: FeatureFrameSource, schema: FeatureGroupSchema, times: Sequence[datetime]
) -> DataFrame:
    """Every feature of the group for every entity of its source, as of each of `times`: keys,
    the group's timestamp key (the time), features."""
    from pyspark.sql import functions as F

    events, event_time, _ = source_events(store, schema)
    keys = list(schema.entity_keys)
    missing = [k for k in keys if k not in events.columns]
    if missing:
        raise MaterializationError(
            f"The events of aggregation group '{schema.name}' have no key column(s) {missing}.",
            fix="declare entity keys that are columns of the source.",
            group=schema.name,
        )
    known = F.col(event_time) <= F.lit(max(times))
    for key in keys:
        known = known & F.col(f"`{key}`").isNotNull()
    entities = (
        events.where(known)
        .select(*keys)
        .distinct()
        .crossJoin(
            store.spark.createDataFrame(
                [(t,) for t in times], f"`{schema.timestamp_key}` timestamp"
            )
        )
    )
    result = window_aggregates(
        entities,
        events,
        keys,
        event_time,
        schema.timestamp_key,
        window_outputs(schema, schema.feature_names),
        what=f"aggregation group '{schema.name}'",
    )
    return result.select(*keys, schema.timestamp_key, *schema.feature_names)


def materialize(
    store: MaterializedFeatureStore, group: str | FeatureGroupSchema, as_of: datetime | None = None
) -> WriteResult:
    """Write the group's values as of `as_of` (default: now, UTC) for every entity of its
    source to its Gold table (merged on keys + time: a re-run replaces the same snapshot)."""
    from featurelake.registry.delta_kv import utc_now

    schema = _aggregation_group(store, group)
    when = as_of or utc_now().replace(tzinfo=None)
    return store.write_features(schema, values_as_of(store, schema, [when]), mode="merge")


def backfill(
    store: MaterializedFeatureStore,
    group: str | FeatureGroupSchema,
    start: datetime,
    end: datetime,
    every: str | timedelta = "1d",
) -> WriteResult:
    """Replace the group's Gold rows in `[start, end)` by its values as of `start`,
    `start + every`, ... (before `end`), for every entity of its source."""
    schema = _aggregation_group(store, group)
    step = parse_duration(every, what="backfill step 'every'")
    if not isinstance(start, datetime) or not isinstance(end, datetime) or start >= end:
        raise MaterializationError(
            f"The backfill range [{start}, {end}) is not a valid time range.",
            fix="pass two datetimes with start < end.",
        )
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
    return store.backfill(schema, values_as_of(store, schema, times), start, end)


def _aggregation_group(
    store: MaterializedFeatureStore, group: str | FeatureGroupSchema
) -> FeatureGroupSchema:
    schema = store.resolve_group(group)
    if not is_aggregation_group(schema):
        raise MaterializationError(
            f"Group '{schema.name}' has no aggregations to compute.",
            fix="write its rows with store.write_features; materialize_aggregations is for "
            "groups declaring 'event_source' and 'aggregations'.",
            group=schema.name,
        )
    return schema
