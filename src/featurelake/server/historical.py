"""Historical aggregations: per entity (and tumbling window), aggregates of features over a range.

`latest` is the value of the last event in the bucket (ties on event time go to the later
`_ingested_at`), `avg` / `sum` (numeric features), `min` / `max` (atomic features) and `count`
(non-null values). Rows come from the group's Gold table through the feature store; the filter
on entities and time is pushed into the Delta scan. The answer stays in Arrow (Spark's Arrow
collect, DuckDB's Arrow result): `answers.answer_chunks` renders it without Python objects per
value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.errors import PointInTimeError, SchemaValidationError
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, parse_duration
from featurelake.schema.types import DataType
from featurelake.server.errors import HistoricalTooLargeError
from featurelake.times import utc_naive as naive_utc

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column

    from featurelake.serving import FeatureStore

AGGREGATIONS = ("latest", "avg", "sum", "min", "max", "count")
MAX_WINDOWS = 10_000
NUMERIC_ONLY = ("avg", "sum")
ORDERED_ONLY = ("min", "max")
PRUNE_RANGE = (datetime(1700, 1, 1), datetime(2200, 1, 1))


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


def estimated_cells(query: HistoricalQuery) -> int:
    """The most values the answer can hold: entities x windows x features x aggregations."""
    windows = 1
    if query.window is not None:
        windows = max(1, math.ceil((query.end - query.start) / query.window))
    return len(query.entities) * windows * len(query.features) * len(query.aggregations)


def check_size(query: HistoricalQuery, limit: int) -> None:
    """HistoricalTooLargeError with the numbers when the answer may hold over `limit` values."""
    cells = estimated_cells(query)
    if cells > limit:
        windows = cells // (len(query.entities) * len(query.features) * len(query.aggregations))
        raise HistoricalTooLargeError(
            f"The answer may hold up to {cells:,} values ({len(query.entities)} entities x "
            f"{windows} windows x {len(query.features)} features x {len(query.aggregations)} "
            f"aggregations); the server's limit is {limit:,}.",
            fix="split the request (fewer entities or features, a shorter range or a longer "
            "window), or raise the server setting max_historical_cells.",
            cells=cells,
            limit=limit,
        )


def run_query(
    store: FeatureStore, query: HistoricalQuery, engine: str = "auto"
) -> tuple[pa.Table, dict[str, Any]]:
    """The answer's rows (entity keys, `_start`, `_end`, the value columns; in no particular
    order) as an Arrow table, and metadata.

    The engine is the store's choice for a read of these rows (`FeatureStore.explain`): DuckDB
    over the Gold table for small reads (no Spark session), Spark otherwise; `engine` forces
    one (`spark`, `duckdb`) where it can serve.
    """
    started = time.perf_counter()
    schema = query.schema
    refs = [f"{schema.name}@{schema.version}.{f}" for f in query.features]
    decision = store.explain(
        refs,
        query.entities,
        query.end,
        strategy="materialized",
        engine=engine,
    )[schema.name]
    read = _duckdb_table if decision.engine == "duckdb" else _spark_table
    rows = read(store, query)
    metadata = {
        "engine": decision.engine,
        "engine_reason": decision.engine_reason,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "entities": len(query.entities),
        "window": None if query.window is None else query.window.total_seconds(),
    }
    return rows, metadata


def _spark_table(store: FeatureStore, query: HistoricalQuery) -> pa.Table:
    from pyspark.sql import functions as F

    from featurelake.engines.spark.frames import entity_filter_frame

    schema = query.schema
    keys = list(schema.entity_keys)
    ts = schema.timestamp_key
    offline = store.offline
    spark = offline.spark
    table = offline.read_table(schema).where(
        (F.col(ts) >= F.lit(query.start)) & (F.col(ts) < F.lit(query.end))
    )
    # Up to 100 ids as an `isin` filter; more (up to 10,000) as a broadcast frame: each literal
    # of an `isin` is a driver call made while holding the interpreter lock online reads need.
    ids = entity_filter_frame(spark, query.entities, keys, what="entities", max_literals=100)
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
    return frame.toArrow()  # ordered when rendered (answers.answer_chunks): no sort job here


def _duckdb_table(store: FeatureStore, query: HistoricalQuery) -> pa.Table:
    """The same aggregation in DuckDB, over the Gold rows delta-rs reads for the request."""
    import pyarrow as pa

    from featurelake.engines.duckdb.executor import connect
    from featurelake.gold.delta_reader import ScanFilter, quote, read_arrow
    from featurelake.online.values import entity_dict

    schema = query.schema
    keys = list(schema.entity_keys)
    ts = schema.timestamp_key
    ids = [entity_dict(keys, e) for e in query.entities]
    for number, entity in enumerate(ids):
        if len(entity) != len(keys):
            raise SchemaValidationError(
                f"Entity {number} ({query.entities[number]!r}) does not give every key of {keys}.",
                fix="pass one value for single-key groups, else an object {key: value}.",
            )
    snapshot = store.hybrid.duckdb_reader.snapshot(schema)
    scan = ScanFilter(
        values={k: sorted({e[k] for e in ids}, key=str) for k in keys},
        time_column=ts,
        time_min=_prunable(query.start),
        time_max=_prunable(query.end),
    )
    table = read_arrow(snapshot, [*keys, ts, *query.features, INGESTED_AT], scan)
    try:
        id_table = pa.Table.from_pylist(
            ids, schema=pa.schema([table.schema.field(k) for k in keys])
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        raise SchemaValidationError(
            f"The entities do not have the types of the keys {keys} of group '{schema.name}': "
            f"{error}",
            fix="send key values of the types the group's table holds.",
        ) from None
    key_list = ", ".join(quote(k) for k in keys)
    column = quote(ts)
    if query.window is not None:
        width = int(query.window.total_seconds()) * 1_000_000
        floor = f"epoch_us({column}) - ((epoch_us({column}) % {width}) + {width}) % {width}"
        bounds = f"make_timestamp({floor}) AS _start, make_timestamp({floor} + {width}) AS _end"
    else:
        bounds = "?::TIMESTAMP AS _start, ?::TIMESTAMP AS _end"
    aggregates = ", ".join(
        f"{_duckdb_aggregate(schema, f, a, column)} AS {quote(f + '__' + a)}"
        for f in query.features
        for a in query.aggregations
    )
    sql = (
        f"SELECT {key_list}, {bounds}, {aggregates} FROM fl_rows "
        f"SEMI JOIN fl_ids USING ({key_list}) "
        f"WHERE {column} >= ? AND {column} < ? GROUP BY ALL"
    )
    parameters: list[Any] = [query.start, query.end]
    if query.window is None:
        parameters = [query.start, query.end, *parameters]
    connection = connect(external_access=False)
    try:
        connection.register("fl_rows", table)
        connection.register("fl_ids", id_table)
        return connection.sql(sql, params=parameters).to_arrow_table()
    finally:
        connection.close()


def _prunable(value: datetime) -> datetime | None:
    """A time bound the delta-rs scan can take (nanosecond range); else no pruning on it (the
    exact range is applied in DuckDB either way)."""
    return value if PRUNE_RANGE[0] <= value <= PRUNE_RANGE[1] else None


def _duckdb_aggregate(schema: FeatureGroupSchema, feature: str, agg: str, ts: str) -> str:
    from featurelake.gold.delta_reader import quote

    column = quote(feature)
    kind = schema.feature(feature).data_type.kind
    if agg == "latest":
        return f"arg_max_null({column}, {{'t': {ts}, 'i': {quote(INGESTED_AT)}}})"
    if agg == "sum" and kind in (DataType.INT, DataType.BIGINT):
        return f"CAST(sum({column}) AS BIGINT)"
    if agg == "avg":
        return f"avg({column})"
    if agg == "count":
        return f"count({column})"
    return f"{agg}({column})"


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
