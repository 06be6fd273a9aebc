"""Historical aggregations: per entity (and tumbling window), aggregates of features over a range.

`latest` is the value of the last event in the bucket (ties on event time go to the later
`_ingested_at`), `avg` / `sum` (numeric features), `min` / `max` (atomic features) and `count`
(non-null values). Rows come from the group's Gold table through the feature store; the filter
on entities and time is pushed into the Delta scan.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.errors import PointInTimeError, SchemaValidationError
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, parse_duration
from featurelake.schema.types import DataType

if TYPE_CHECKING:
    from pyspark.sql import Column

    from featurelake.serving import FeatureStore

AGGREGATIONS = ("latest", "avg", "sum", "min", "max", "count")
MAX_WINDOWS = 10_000
NUMERIC_ONLY = ("avg", "sum")
ORDERED_ONLY = ("min", "max")


@dataclass(frozen=True)
class HistoricalQuery:
    """A checked request: one group, its features, the range and the aggregations."""

    schema: FeatureGroupSchema
    features: tuple[str, ...]
    entities: list[Any]
    start: datetime
    end: datetime
    aggregations: tuple[str, ...]
    window: timedelta | None

    @property
    def columns(self) -> list[str]:
        return [f"{f}__{a}" for f in self.features for a in self.aggregations]


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def build_query(
    schema: FeatureGroupSchema,
    features: Sequence[str],
    entities: list[Any],
    start: datetime,
    end: datetime,
    aggregations: Sequence[str],
    window: str | None,
) -> HistoricalQuery:
    """Check the request against the schema; SchemaValidationError / PointInTimeError if not."""
    start, end = naive_utc(start), naive_utc(end)
    if start >= end:
        raise PointInTimeError(
            f"The time range [{start}, {end}) is empty.", fix="pass start < end."
        )
    length = None
    if window is not None:
        try:
            length = parse_duration(window, what="window")
        except OverflowError:
            length = None
        if length is None or length < timedelta(seconds=1):
            raise SchemaValidationError(
                f"The window {window!r} is not a positive duration.",
                fix="use a duration of at least 1s, such as '1h', '1d' or '7d'.",
            )
        if (end - start) / length > MAX_WINDOWS:
            raise SchemaValidationError(
                f"The range [{start}, {end}) holds more than {MAX_WINDOWS} windows of {window}.",
                fix="use a longer window or a shorter range.",
            )
    aggs = tuple(dict.fromkeys(aggregations))
    for name in features:
        kind = schema.feature(name).data_type
        for agg in aggs:
            if agg in NUMERIC_ONLY and not kind.is_numeric:
                raise SchemaValidationError(
                    f"'{agg}' needs a numeric feature; '{schema.name}.{name}' is {kind}.",
                    fix="use latest, min, max or count for this feature.",
                )
            if agg in ORDERED_ONLY and (not kind.is_atomic or kind.kind is DataType.BOOLEAN):
                raise SchemaValidationError(
                    f"'{agg}' needs an ordered feature; '{schema.name}.{name}' is {kind}.",
                    fix="use latest or count for this feature.",
                )
    return HistoricalQuery(schema, tuple(features), entities, start, end, aggs, length)


def run_query(
    store: FeatureStore, query: HistoricalQuery
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows `{entity, window_start, window_end, values}` and metadata, ordered by entity, window."""
    from pyspark.sql import functions as F

    from featurelake.offline.frames import entity_filter_frame

    started = time.perf_counter()
    schema = query.schema
    keys = list(schema.entity_keys)
    ts = schema.timestamp_key
    offline = store.offline
    spark = offline.spark
    table = offline.read_table(schema).where(
        (F.col(ts) >= F.lit(query.start)) & (F.col(ts) < F.lit(query.end))
    )
    ids = entity_filter_frame(spark, query.entities, keys, what="entities")
    if isinstance(ids, list):
        table = table.where(F.col(keys[0]).isin(ids))
    else:
        table = table.join(F.broadcast(ids), on=keys, how="left_semi")
    if query.window is not None:
        seconds = int(query.window.total_seconds())
        bucket = F.window(F.col(ts), f"{seconds} seconds")
        grouped = table.groupBy(*keys, bucket.alias("_w"))
        bounds = [F.col("_w.start").alias("_start"), F.col("_w.end").alias("_end")]
    else:
        grouped = table.groupBy(*keys)
        bounds = [F.lit(query.start).alias("_start"), F.lit(query.end).alias("_end")]
    aggregates = [
        _aggregate(feature, agg, ts).alias(f"{feature}__{agg}")
        for feature in query.features
        for agg in query.aggregations
    ]
    frame = grouped.agg(*aggregates).select(*keys, *bounds, *query.columns)
    collected = frame.orderBy(*keys, "_start").collect()
    rows = [
        {
            "entity": {k: row[k] for k in keys},
            "window_start": row["_start"],
            "window_end": row["_end"],
            "values": {c: row[c] for c in query.columns},
        }
        for row in collected
    ]
    metadata = {
        "engine": "spark",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "entities": len(query.entities),
        "window": None if query.window is None else query.window.total_seconds(),
    }
    return rows, metadata


def _aggregate(feature: str, agg: str, ts: str) -> Column:
    from pyspark.sql import functions as F

    column = F.col(feature)
    if agg == "latest":
        return F.max_by(column, F.struct(F.col(ts), F.col(INGESTED_AT)))
    if agg == "avg":
        return F.avg(column)
    if agg == "sum":
        return F.sum(column)
    if agg == "min":
        return F.min(column)
    if agg == "max":
        return F.max(column)
    return F.count(column)
