"""Windowed aggregations as of each entity row, in one sort-based pass over rows + events.

The window rule is `plan.rules` (`in_window`): for an entity row `(keys, t)` a window `w` covers
the events of its keys with `t - w < event_ts <= t` (an event exactly at `t - w` is out, one
exactly at `t` is in). This module compiles it to Spark.

How it runs, without joining entity rows to events:

- Entity rows are unioned with the events, partitioned by the keys (one shuffle) and sorted by
  time, events before rows at equal times (one sort).
- Every event is a *partial aggregate* of itself (count 1, sum, mean and squared deviations 0,
  min, max, latest `(time, value)`), so pre-aggregated tiles (below) mix with raw events.
- `count`, `sum` and `avg` come from running totals (count, sum): the window's value is the
  total at `t` minus the total of the rows at or before `t - w`, read on the entity row itself
  through an unbounded-preceding RANGE frame ending `w` before it (Spark advances it
  incrementally). `last` is the running maximum of `(event time, value)` (at equal times the
  largest value), kept when its event time is after `t - w`. A group with only these needs
  nothing else: one shuffle, one sort, and the entity rows come out of the window pass.
- `min`, `max`, `stddev` and `approx_count_distinct` are not subtracted. Time is cut into
  spans as long as the window (aligned on the epoch), so `(t - w, t]` is the head of the span
  holding `t` (a running aggregate from the span's start up to `t`) plus the tail of the
  previous span after `t - w` (the same running aggregate in reverse time order, read at the
  probe); the two parts are merged (stddev with Chan's formula over count, mean and squared
  deviations, each part's sums shifted by its first mean so they do not cancel). Each row and
  event is touched a constant number of times. The tail is read at a *probe*: one more row per
  such window at `t - w`, sharing the entity row's id.
- With probes, a group-by on (keys, row id) puts each row's values and its probes' values
  together; the rows are already partitioned by the keys, so it needs no second shuffle.

With `tiles` (`Tiles`: partials of the events per key and tile `(end - size, end]`, written by
`tile_partials`), a tile that no entity time of its key (`t`, or `t - w`, read there at probes
for every window) falls strictly inside is read as one row at its end instead of its events:
moving its events to the tile's end changes no window, since no `t` or `t - w` of that key lies
between them. Only the events of the few tiles that hold an entity time are read raw (a filter
on their tile ids, pushed to the scan); entity rows on tile boundaries (daily snapshots over
hourly tiles) read no raw event at all. When entity times fall into more than `MAX_RAW_TILES`
distinct tiles (or into over half the tiles of their span) the tiles would not save reading
the events, and the events are read as they are.

Every aggregate runs over a frame from the partition start (to the current row, or to `w`
before it), which Spark computes incrementally, so the cost grows with entity rows plus events,
never with their product on a busy key (a sliding RANGE frame would recompute min/max per row).
Several functions and windows of one source share the same pass.

Floating-point sums are differences of running totals: exact up to rounding of the key's
running total (about 1e-16 of it). The running order is fixed (time, then the values), and
every event up to the latest entity time is read, so a window value does not depend on which
other entity rows were asked for. `approx_count_distinct` uses HyperLogLog sketches
(lgConfigK 12: relative standard error about 1.6%); integers and strings are hashed as they
are, other types as their string form. Only DataFrame functions are used (no UDFs, no RDDs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from featurelake.errors import PointInTimeError, SchemaValidationError
from featurelake.plan import rules
from featurelake.schema import SqlType

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

HLL_LG_CONFIG_K = 12
"""HyperLogLog size of approx_count_distinct: 2^12 buckets, relative standard error ~1.6%."""

INVERTIBLE = ("count", "sum", "avg")
TILED = ("min", "max", "stddev", "approx_count_distinct")
TILE_END = "tile_end"
"""Column of a tiles frame: the end of the tile `(tile_end - size, tile_end]`."""
MAX_RAW_TILES = 20_000
"""Entity times falling into more distinct tiles than this read the events without tiles."""
RAW_SHARE = 0.5
"""...or into more than this share of the tiles their times span."""

_P = "__win_"
_T = f"{_P}t"  # time in epoch microseconds
_KIND = f"{_P}kind"  # 0 event or tile, 1 entity row or probe
_RID = f"{_P}rid"
_ROLE = f"{_P}role"  # 0 the entity row at t, i > 0 the probe at t - windows[i - 1]
_ROW = f"{_P}row"
_SRC = f"{_P}src"  # 0 raw event, 1 tile, 2 entity row or probe (with tiles only)
_TILE = f"{_P}tile"  # tile id: its end / size (with tiles only)

# The partial aggregates each function reads.
_PARTS = {
    "count": ("n",),
    "sum": ("n", "s"),
    "avg": ("n", "s"),
    "stddev": ("n", "mean", "m2"),
    "min": ("min",),
    "max": ("max",),
    "last": ("last",),
    "approx_count_distinct": ("hll",),
}


@dataclass(frozen=True)
class WindowOutput:
    """One output column: `function` of `column` (where `filter`) over `window`."""

    name: str
    column: str
    """A column of the events, or "*" (count of events)."""
    function: str
    window: timedelta
    filter: str | None = None
    result_type: str = "double"


@dataclass(frozen=True)
class Tiles:
    """Partial aggregates of the events per key and tile `(tile_end - size, tile_end]`, as
    `tile_partials` writes them, complete for the events they are read with."""

    frame: DataFrame
    size: timedelta


def window_aggregates(
    entity_df: DataFrame,
    events: DataFrame,
    keys: Sequence[str],
    event_time: str,
    entity_time: str,
    outputs: Sequence[WindowOutput],
    *,
    what: str = "the aggregation",
    tiles: Tiles | None = None,
) -> DataFrame:
    """Every row of `entity_df` once, with each output computed over its window as of the row's
    `entity_time`. Rows with a null key or time get null outputs.

    Checks columns, types and filters before any Spark job; one small aggregation reads the
    latest entity time (events after it are not read), and with `tiles` one more lists the
    tiles entity times fall inside.
    """
    from pyspark.sql import functions as F

    if not outputs:
        return entity_df
    entity_types = _check_entities(entity_df, keys, entity_time, what)
    key_types = _common_key_types(
        keys, entity_types, _check_events(events, keys, event_time, outputs, what), what
    )
    feeds = _value_columns(events, outputs, what)
    parts = _parts_of(feeds, outputs)
    windows = sorted({o.window for o in outputs})
    if tiles is not None:
        _check_tiles(tiles, keys, parts, what)
    latest = entity_df.select(F.max(F.col(_q(entity_time)).cast("timestamp")).alias("hi")).first()
    latest_time = latest["hi"] if latest is not None else None

    key_columns = [f"{_P}k{i}" for i in range(len(keys))]
    entity_columns = entity_df.columns
    time_us = F.unix_micros(F.col(_q(entity_time)).cast("timestamp"))
    probes = [F.struct(F.lit(0).alias("role"), time_us.alias("t"))]
    for index, window in enumerate(windows, start=1):
        probes.append(F.struct(F.lit(index).alias("role"), (time_us - _micros(window)).alias("t")))
    numbered = entity_df.select(
        F.monotonically_increasing_id().alias(_RID),  # once per entity row, before the explode
        F.struct(*[F.col(_q(c)) for c in entity_columns]).alias(_ROW),
        *[
            F.col(_q(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ],
        F.array(*probes).alias("probes"),
    )
    entity_side = (
        numbered.select(_RID, _ROW, *key_columns, F.explode(F.col("probes")).alias("probe"))
        .select(
            *key_columns,
            F.col("probe.t").alias(_T),
            F.lit(1).alias(_KIND),
            F.col(_RID),
            F.col("probe.role").alias(_ROLE),
            F.when(F.col("probe.role") == 0, F.col(_ROW)).alias(_ROW),
            *[F.lit(None).cast(kind).alias(name) for name, kind in parts.items()],
        )
        .where(F.col(_T).isNotNull() | (F.col(_ROLE) == 0))  # a row without time stays
    )
    row_type = entity_side.schema[_ROW].dataType
    keep = F.col(_q(event_time)).isNotNull()
    for key in keys:
        keep = keep & F.col(_q(key)).isNotNull()
    if latest_time is not None:
        keep = keep & (F.col(_q(event_time)) <= F.lit(latest_time))
    event_time_us = F.unix_micros(F.col(_q(event_time)).cast("timestamp"))
    raw_tiles = _raw_tiles(entity_side, tiles, latest_time) if tiles is not None else None
    if tiles is not None and raw_tiles is not None:
        size = _micros_int(tiles.size)
        keep = keep & _tile_id(event_time_us, size).isin(raw_tiles)
    event_side = events.where(keep).select(
        *[
            F.col(_q(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ],
        event_time_us.alias(_T),
        F.lit(0).alias(_KIND),
        F.lit(None).cast("bigint").alias(_RID),
        F.lit(None).cast("int").alias(_ROLE),
        F.lit(None).cast(row_type).alias(_ROW),
        *_raw_partials(feeds, parts, event_time_us),
    )
    tiled = tiles is not None and raw_tiles is not None
    if tiles is not None and raw_tiles is not None:
        unioned = _with_tiles(
            entity_side,
            event_side,
            tiles,
            keys,
            key_types,
            key_columns,
            parts,
            latest_time,
            bool(raw_tiles),
        )
    else:  # one shuffle by the keys and one sort serve the running windows below
        probed = [0, *(i for i, w in enumerate(windows, start=1) if w in _probed(outputs))]
        unioned = (
            entity_side.where(F.col(_ROLE).isin(probed))
            .unionByName(event_side)
            .repartition(*key_columns)
            .sortWithinPartitions(*key_columns, *_running_order(parts))
        )
    computed = _running(unioned, key_columns, feeds, outputs, windows, parts, tiled)
    collected = _per_row(computed, key_columns, feeds, outputs, windows, tiled)
    return _finish(collected, entity_df, entity_time, keys, feeds, outputs, windows)


def tile_partials(
    events: DataFrame,
    keys: Sequence[str],
    event_time: str,
    outputs: Sequence[WindowOutput],
    size: timedelta,
    *,
    what: str = "the aggregation",
) -> DataFrame:
    """The partial aggregates `window_aggregates` reads as `Tiles`: one row per key and tile
    `(tile_end - size, tile_end]` holding events (keys as in `events`, `tile_end`, partials),
    each the merge of its events' own partials."""
    from pyspark.sql import functions as F

    _check_tile_size(size, what)
    _check_events(events, keys, event_time, outputs, what)
    feeds = _value_columns(events, outputs, what)
    parts = _parts_of(feeds, outputs)
    keep = F.col(_q(event_time)).isNotNull()
    for key in keys:
        keep = keep & F.col(_q(key)).isNotNull()
    time_us = F.unix_micros(F.col(_q(event_time)).cast("timestamp"))
    size_us = _micros_int(size)
    rows = events.where(keep).select(
        *[F.col(_q(k)) for k in keys],
        (_tile_id(time_us, size_us) * F.lit(size_us)).alias(TILE_END),
        *_raw_partials(feeds, parts, time_us),
    )
    aggregates: list[Column] = []
    for column, kind in parts.items():
        value_name, part = column[len(_P) :].rsplit("_", 1)
        c = F.col(column)
        if part in ("n", "s"):
            aggregate = F.sum(c)
        elif part == "mean":
            aggregate = F.avg(c)
        elif part == "m2":  # from the events' values (their own means)
            mean = F.col(f"{_P}{value_name}_mean")
            aggregate = F.var_pop(mean) * F.count(mean)
        elif part == "min":
            aggregate = F.min(c)
        elif part == "max":
            aggregate = F.max(c)
        elif part == "last":
            aggregate = _latest(c)
        elif part == "hll":
            aggregate = F.hll_sketch_agg(F.col(f"{_P}{value_name}_raw"), HLL_LG_CONFIG_K)
        else:  # raw values only feed the sketches
            continue
        aggregates.append(aggregate.cast(kind).alias(column[len(_P) :]))
    grouped = rows.groupBy(*[F.col(_q(k)) for k in keys], F.col(TILE_END)).agg(*aggregates)
    return grouped.withColumn(TILE_END, F.timestamp_micros(F.col(TILE_END)))


# -- checks -------------------------------------------------------------------------------------


def _check_entities(
    entity_df: DataFrame, keys: Sequence[str], entity_time: str, what: str
) -> dict[str, DataType]:
    """The entity rows' column types, once they are known to hold the keys and the time."""
    entity_types = {f.name: f.dataType for f in entity_df.schema.fields}
    for column in (*keys, entity_time):
        if column not in entity_types:
            raise PointInTimeError(
                f"The entity DataFrame has no column '{column}' needed by {what}.",
                fix=f"add '{column}' to the entity rows.",
                column=column,
            )
    return entity_types


def _check_events(
    events: DataFrame,
    keys: Sequence[str],
    event_time: str,
    outputs: Sequence[WindowOutput],
    what: str,
) -> dict[str, DataType]:
    """The events' column types, once they are known to hold the keys, a timestamp event
    time and the aggregated columns (numeric where the function needs it)."""
    from pyspark.sql import types as T

    event_types = {f.name: f.dataType for f in events.schema.fields}
    for column, role in [*((k, "entity key") for k in keys), (event_time, "event time")]:
        if column not in event_types:
            raise PointInTimeError(
                f"The events of {what} have no {role} column '{column}'. Their columns are: "
                f"{', '.join(event_types)}.",
                fix=f"make the source carry '{column}', or declare the group's keys and "
                "timestamp_key after the source's columns.",
                column=column,
            )
    if not isinstance(event_types[event_time], T.TimestampType | T.TimestampNTZType | T.DateType):
        raise PointInTimeError(
            f"The event time '{event_time}' of {what} has type "
            f"{event_types[event_time].simpleString()}.",
            fix="make the event time a timestamp column.",
            column=event_time,
        )
    numeric = (T.NumericType, T.BooleanType)
    for output in outputs:
        if output.column == "*":
            continue
        kind = event_types.get(output.column)
        if kind is None:
            raise PointInTimeError(
                f"The events of {what} have no column '{output.column}' (aggregated by "
                f"'{output.name}'). Their columns are: {', '.join(event_types)}.",
                fix="aggregate a column of the source, or correct the column name.",
                column=output.column,
            )
        if output.function in ("sum", "avg", "stddev") and not isinstance(kind, numeric):
            raise PointInTimeError(
                f"'{output.name}' takes the {output.function} of '{output.column}', which has "
                f"type {kind.simpleString()}.",
                fix="sum, avg and stddev need a numeric column; use count, min, max, last or "
                "approx_count_distinct for others.",
                column=output.column,
            )
    return event_types


def _common_key_types(
    keys: Sequence[str],
    entity_types: dict[str, DataType],
    event_types: dict[str, DataType],
    what: str,
) -> list[DataType]:
    """The type each key is joined as: equal on both sides, or bigint for two integral ones."""
    from pyspark.sql import types as T

    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    common: list[DataType] = []
    for key in keys:
        left, right = entity_types[key], event_types[key]
        if left == right:
            common.append(left)
        elif isinstance(left, integral) and isinstance(right, integral):
            common.append(T.LongType())
        else:
            raise PointInTimeError(
                f"The entity key '{key}' of {what} is {left.simpleString()} in the entity rows "
                f"and {right.simpleString()} in the events.",
                fix=f"cast '{key}' to one type on both sides.",
                column=key,
            )
    return common


# -- the pass -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    """A value column of the events: `column` converted to `target`, where `filter` holds.
    Its name is a digest of the three, the same for every request and for the tiles."""

    name: str
    column: str
    filter: str | None
    target: str | None
    expression: Column
    spark_type: str


def _target(output: WindowOutput, event_types: dict[str, DataType]) -> str | None:
    """The type an output aggregates its column as (None: as it is)."""
    from pyspark.sql import types as T

    if output.column == "*" or output.function == "count":
        return None
    if output.function in ("sum", "avg", "stddev"):
        return "double"
    if output.function in ("min", "max", "last"):
        return output.result_type
    kind = event_types[output.column]  # approx_count_distinct hashes integers and strings
    if isinstance(kind, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return "bigint"
    return None if isinstance(kind, T.StringType) else "string"


def _value_columns(
    events: DataFrame, outputs: Sequence[WindowOutput], what: str
) -> dict[str, _Value]:
    """One column per (column, filter, conversion), the filter checked by Spark's analyzer."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    event_types = {f.name: f.dataType for f in events.schema.fields}
    values: dict[tuple[str, str | None, str | None], _Value] = {}
    feeds: dict[str, _Value] = {}
    for output in outputs:
        target = _target(output, event_types)
        key = (output.column, output.filter, target)
        if key in values:
            feeds[output.name] = values[key]
            continue
        base = F.lit(1) if output.column == "*" else F.col(_q(output.column))
        if target is not None:
            base = base.cast(target)
        if output.filter:
            try:
                events.select(F.expr(output.filter).cast("boolean")).schema  # noqa: B018
            except PySparkException as error:
                raise PointInTimeError(
                    f"The filter '{output.filter}' of '{output.name}' ({what}) does not apply to "
                    f"the events: {str(error).strip().splitlines()[0]}",
                    fix="write the filter over the source's columns: "
                    + ", ".join(event_types)
                    + ".",
                    column=output.name,
                ) from None
            base = F.when(F.expr(output.filter).cast("boolean"), base)
        if target is not None:
            spark_type = target
        elif output.column == "*":
            spark_type = "int"
        else:
            spark_type = event_types[output.column].simpleString()
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        values[key] = _Value(f"v{digest}", output.column, output.filter, target, base, spark_type)
        feeds[output.name] = values[key]
    return feeds


def _parts_of(feeds: dict[str, _Value], outputs: Sequence[WindowOutput]) -> dict[str, str]:
    """The partial columns the outputs read (`__win_{value}_{part}`) and their types."""
    parts: dict[str, str] = {}
    for output in sorted(outputs, key=lambda o: (feeds[o.name].name, o.function)):
        value = feeds[output.name]
        for part in _PARTS[output.function]:
            if part == "n":
                kind = "bigint"
            elif part in ("s", "mean", "m2"):
                kind = "double"
            elif part == "last":
                kind = f"struct<t:bigint,v:{value.spark_type}>"
            elif part == "hll":
                kind = "binary"
            else:
                kind = value.spark_type
            parts[f"{_P}{value.name}_{part}"] = kind
            if part == "hll":
                parts[f"{_P}{value.name}_raw"] = value.spark_type
    return parts


def _raw_partials(feeds: dict[str, _Value], parts: dict[str, str], time_us: Column) -> list[Column]:
    """Each event as a partial aggregate of itself (its value kept raw for sketches)."""
    from pyspark.sql import functions as F

    by_name = {v.name: v for v in feeds.values()}
    columns = []
    for column, kind in parts.items():
        value_name, part = column[len(_P) :].rsplit("_", 1)
        v = by_name[value_name].expression
        if part == "n":
            partial = v.isNotNull().cast("bigint")
        elif part == "m2":
            partial = F.when(v.isNotNull(), F.lit(0.0))
        elif part == "last":
            partial = F.when(v.isNotNull(), F.struct(time_us.alias("t"), v.alias("v")))
        elif part == "hll":
            partial = F.lit(None)
        else:  # the value itself: sum, mean, min, max, raw
            partial = v
        columns.append(partial.cast(kind).alias(column))
    return columns


def _check_tile_size(size: timedelta, what: str) -> None:
    if size <= timedelta(0) or size % timedelta(microseconds=1):
        raise PointInTimeError(
            f"The tile size {size} of {what} is not a positive whole number of microseconds.",
            fix="use a tile size such as 1h or 1d.",
        )


def _check_tiles(tiles: Tiles, keys: Sequence[str], parts: dict[str, str], what: str) -> None:
    _check_tile_size(tiles.size, what)
    columns = set(tiles.frame.columns)
    needed = [*keys, TILE_END, *(c[len(_P) :] for c in parts if not c.endswith("_raw"))]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise PointInTimeError(
            f"The tiles of {what} do not fit its aggregations: they have no column(s) {missing}.",
            fix="rebuild the tiles from the group's current schema (materialize the group).",
        )


def _tile_id(time_us: Column, size_us: int) -> Column:
    """The id of the tile `(end - size, end]` holding a time: its end / size."""
    from pyspark.sql import functions as F

    end = time_us + F.pmod(-time_us, F.lit(size_us))
    return (end / F.lit(size_us)).cast("bigint")


def _raw_tiles(entity_side: DataFrame, tiles: Tiles, latest_time: object) -> list[int] | None:
    """The ids of the tiles some entity or probe time falls strictly inside (their events are
    read raw), or None when they are too many for the tiles to save reading events."""
    from pyspark.sql import functions as F

    size = _micros_int(tiles.size)
    t = F.col(_T)
    inside = F.when(t.isNotNull() & (F.pmod(t, F.lit(size)) != 0), _tile_id(t, size))
    stats = entity_side.agg(
        F.min(t).alias("lo"), F.max(t).alias("hi"), F.approx_count_distinct(inside).alias("n")
    ).first()
    if stats is None or stats["lo"] is None or latest_time is None:
        return []
    span = (int(stats["hi"]) - int(stats["lo"])) // size + 1
    if stats["n"] > MAX_RAW_TILES or stats["n"] > span * RAW_SHARE:
        return None
    ids = entity_side.select(inside.alias("id")).where(F.col("id").isNotNull()).distinct()
    found = [int(row["id"]) for row in ids.limit(MAX_RAW_TILES + 1).collect()]
    return None if len(found) > MAX_RAW_TILES else sorted(found)


def _with_tiles(
    entity_side: DataFrame,
    event_side: DataFrame,
    tiles: Tiles,
    keys: Sequence[str],
    key_types: Sequence[DataType],
    key_columns: Sequence[str],
    parts: dict[str, str],
    latest_time: object,
    any_raw: bool,
) -> DataFrame:
    """Entity rows, raw events and tile rows, keeping per key and tile either its tile row (no
    entity time strictly inside it) or its raw events (one inside). Without `any_raw` (every
    entity time on a tile edge) no event is read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    size = _micros_int(tiles.size)
    row_type = entity_side.schema[_ROW].dataType
    frame = tiles.frame
    if latest_time is not None:
        frame = frame.where(
            F.col(TILE_END) < F.lit(latest_time) + F.expr(f"INTERVAL {size} MICROSECONDS")
        )
    tile_side = frame.select(
        *[
            F.col(_q(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ],
        F.unix_micros(F.col(TILE_END)).alias(_T),
        F.lit(0).alias(_KIND),
        F.lit(None).cast("bigint").alias(_RID),
        F.lit(None).cast("int").alias(_ROLE),
        F.lit(None).cast(row_type).alias(_ROW),
        *[
            (F.lit(None) if c.endswith("_raw") else F.col(_q(c[len(_P) :]))).cast(kind).alias(c)
            for c, kind in parts.items()
        ],
    )
    if not any_raw:
        return entity_side.unionByName(tile_side).repartition(*key_columns)
    t = F.col(_T)
    sides = [
        entity_side.withColumn(_SRC, F.lit(2)),
        event_side.withColumn(_SRC, F.lit(0)),
        tile_side.withColumn(_SRC, F.lit(1)),
    ]
    # Sorted once by keys, tile, then the running order (tile ids grow with time, so this is
    # the running order too): the per-tile flag below and the running aggregates reuse it.
    unioned = (
        sides[0]
        .unionByName(sides[1])
        .unionByName(sides[2])
        .withColumn(_TILE, _tile_id(t, size))
        .repartition(*key_columns)
        .sortWithinPartitions(*key_columns, _TILE, *_running_order(parts))
    )
    strictly_inside = (F.col(_SRC) == 2) & (F.pmod(t, F.lit(size)) != 0)
    inside = F.max(strictly_inside.cast("int")).over(Window.partitionBy(*key_columns, _TILE))
    src = F.col(_SRC)
    has = F.col(f"{_P}inside")
    return (
        unioned.withColumn(f"{_P}inside", inside)
        .where((src == 2) | ((src == 0) & (has == 1)) | ((src == 1) & (has == 0)))
        .drop(_SRC, f"{_P}inside")
    )


def _running_order(parts: dict[str, str]) -> list[Column]:
    """Time, events before rows, then the values (a fixed order for floating-point sums)."""
    from pyspark.sql import functions as F

    tie_breakers = [
        F.col(name).asc_nulls_first()
        for name, kind in sorted(parts.items())
        if _orderable(kind) and not name.endswith(("_n", "_last", "_hll"))
    ]
    return [F.col(_T).asc(), F.col(_KIND).asc(), *tie_breakers]


def _latest(column: Column) -> Column:
    """The aggregate keeping the latest `(t, v)` (at equal times the largest value)."""
    from pyspark.sql import functions as F

    return F.max(column)


def _running(
    unioned: DataFrame,
    key_columns: Sequence[str],
    feeds: dict[str, _Value],
    outputs: Sequence[WindowOutput],
    windows: Sequence[timedelta],
    parts: dict[str, str],
    tiled: bool,
) -> DataFrame:
    """Running totals over time, and forward/reverse running aggregates within window spans."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lead = [F.col(_TILE).asc()] if _TILE in unioned.columns else []  # see _with_tiles
    ordered = (
        Window.partitionBy(*key_columns)
        .orderBy(*lead, *_running_order(parts))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    base: list[Column] = [
        *[F.col(k) for k in key_columns],
        F.col(_RID),
        F.col(_ROLE),
        F.col(_ROW),
        F.col(_T),
    ]
    columns = list(base)
    shifts: list[Column] = []  # stddev: each span part's first mean, computed first
    done: set[str] = set()

    def add(name: str, column: Column, into: list[Column] = columns) -> None:
        if name not in done:
            done.add(name)
            into.append(column.alias(name))

    def part(value: _Value, name: str) -> Column:
        return F.col(f"{_P}{value.name}_{name}")

    index_of = {w: i for i, w in enumerate(windows, start=1)}
    for output in outputs:
        value = feeds[output.name]
        if output.function in INVERTIBLE:
            totals = ["n"] if output.function == "count" else ["n", "s"]
            for total in totals:
                add(f"{value.name}_{total}", F.sum(part(value, total)).over(ordered))
            if tiled:
                continue  # the probes at t - w hold the totals before the window
            # Without probes: the total of every row at or before t - w (Spark advances such
            # an unbounded-preceding RANGE frame incrementally; the rows are already sorted).
            index = index_of[output.window]
            before = (
                Window.partitionBy(*key_columns)
                .orderBy(F.col(_T).asc())
                .rangeBetween(Window.unboundedPreceding, -_micros_int(output.window))
            )
            for total in totals:
                add(f"{value.name}_{total}_r{index}", F.sum(part(value, total)).over(before))
        elif output.function == "last":
            add(f"{value.name}_last", _latest(part(value, "last")).over(ordered))
    for index, window in enumerate(windows, start=1):
        spanned = [o for o in outputs if o.window == window and o.function in TILED]
        if not spanned:
            continue
        span = F.floor(F.col(_T) / F.lit(_micros_int(window)))
        specs = {
            "f": Window.partitionBy(*key_columns, span)
            .orderBy(F.col(_T).asc(), F.col(_KIND).asc())
            .rowsBetween(Window.unboundedPreceding, Window.currentRow),
            "b": Window.partitionBy(*key_columns, span)
            .orderBy(F.col(_T).desc(), F.col(_KIND).desc())
            .rowsBetween(Window.unboundedPreceding, Window.currentRow),
        }
        for output in spanned:
            value = feeds[output.name]
            for direction, spec in specs.items():
                name = f"{value.name}_{output.function}_{direction}{index}"
                if output.function == "min":
                    add(name, F.min(part(value, "min")).over(spec))
                elif output.function == "max":
                    add(name, F.max(part(value, "max")).over(spec))
                elif output.function == "stddev":
                    shift = f"{_P}{name}_c"
                    add(shift, F.first(part(value, "mean"), ignorenulls=True).over(spec), shifts)
                    n, mean, m2 = part(value, "n"), part(value, "mean"), part(value, "m2")
                    gap = mean - F.col(shift)
                    count = F.sum(n).over(spec)
                    d1 = F.sum(n * gap).over(spec)
                    d2 = F.sum(m2 + n * gap * gap).over(spec)
                    add(f"{name}_n", count)
                    add(f"{name}_m", F.col(shift) + d1 / count)
                    add(f"{name}_d", F.greatest(d2 - d1 * d1 / count, F.lit(0.0)))
                else:
                    sketch = F.hll_sketch_agg(part(value, "raw"), HLL_LG_CONFIG_K).over(spec)
                    if tiled:
                        merged = F.hll_union_agg(part(value, "hll"), True).over(spec)
                        sketch = _union_sketches(sketch, merged)
                    add(name, sketch)
    if shifts:
        unioned = unioned.select("*", *shifts)
    return unioned.select(*columns).where(F.col(_RID).isNotNull())


def _union_sketches(a: Column, b: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(a.isNull(), b).when(b.isNull(), a).otherwise(F.hll_union(a, b, True))


def _per_row(
    computed: DataFrame,
    key_columns: Sequence[str],
    feeds: dict[str, _Value],
    outputs: Sequence[WindowOutput],
    windows: Sequence[timedelta],
    tiled: bool,
) -> DataFrame:
    """One row per entity row: its own values (role 0) beside its probes' (role i), named
    `{source}@{role}`; the totals before a window are `{value}_{n|s}@b{index}`."""
    from pyspark.sql import functions as F

    index_of = {w: i for i, w in enumerate(windows, start=1)}
    probes = tiled or bool(_probed(outputs))

    def pick(source: str, role: int) -> Column:  # the one non-null value of the row id
        if not probes:
            return F.col(source)
        return F.first(F.when(F.col(_ROLE) == role, F.col(source)), ignorenulls=True)

    aggregations = [pick(_ROW, 0).alias(_ROW), pick(_T, 0).alias(_T)]
    taken: set[str] = set()

    def take(source: str, role: int, alias: str | None = None) -> None:
        alias = alias or f"{source}@{role}"
        if alias not in taken:
            taken.add(alias)
            aggregations.append(pick(source, role).alias(alias))

    for output in outputs:
        value = feeds[output.name]
        role = index_of[output.window]
        if output.function in INVERTIBLE:
            parts = ["n"] + ([] if output.function == "count" else ["s"])
            for part in parts:
                take(f"{value.name}_{part}", 0)
                before = f"{value.name}_{part}@b{role}"
                if tiled:
                    take(f"{value.name}_{part}", role, before)
                else:
                    take(f"{value.name}_{part}_r{role}", 0, before)
        elif output.function == "last":
            take(f"{value.name}_last", 0)
        elif output.function == "stddev":
            for part in ("n", "m", "d"):
                take(f"{value.name}_stddev_f{role}_{part}", 0)
                take(f"{value.name}_stddev_b{role}_{part}", role)
        else:
            take(f"{value.name}_{output.function}_f{role}", 0)
            take(f"{value.name}_{output.function}_b{role}", role)
    if not probes:  # every value is on the entity row itself
        return computed.where(F.col(_ROLE) == 0).select(*aggregations)
    # Grouped by the keys too: the rows are already partitioned by them, so no new shuffle.
    return computed.groupBy(*key_columns, _RID).agg(*aggregations)


def _probed(outputs: Sequence[WindowOutput]) -> set[timedelta]:
    """The windows whose values need a probe row at t - w: those of min, max, stddev and
    approx_count_distinct (count, sum, avg and last are read on the entity row)."""
    return {o.window for o in outputs if o.function in TILED}


def _finish(
    collected: DataFrame,
    entity_df: DataFrame,
    entity_time: str,
    keys: Sequence[str],
    feeds: dict[str, _Value],
    outputs: Sequence[WindowOutput],
    windows: Sequence[timedelta],
) -> DataFrame:
    from pyspark.sql import functions as F

    index_of = {w: i for i, w in enumerate(windows, start=1)}

    def col(source: str, role: int) -> Column:
        return F.col(f"`{source}@{role}`")

    columns = [F.col(_ROW).getField(c).alias(c) for c in entity_df.columns]
    valid = F.col(_ROW).getField(entity_time).isNotNull()
    for key in keys:
        valid = valid & F.col(_ROW).getField(key).isNotNull()
    for output in outputs:
        value = feeds[output.name]
        role = index_of[output.window]
        base = value.name
        result: Column
        if output.function in INVERTIBLE:
            n = F.coalesce(col(f"{base}_n", 0), F.lit(0)) - F.coalesce(
                F.col(f"`{base}_n@b{role}`"), F.lit(0)
            )
            if output.function == "count":
                result = n
            else:
                s = F.coalesce(col(f"{base}_s", 0), F.lit(0.0)) - F.coalesce(
                    F.col(f"`{base}_s@b{role}`"), F.lit(0.0)
                )
                result = F.when(n > 0, s) if output.function == "sum" else F.when(n > 0, s / n)
        elif output.function == "stddev":
            result = _merged_stddev(
                *[col(f"{base}_stddev_f{role}_{p}", 0) for p in ("n", "m", "d")],
                *[col(f"{base}_stddev_b{role}_{p}", role) for p in ("n", "m", "d")],
            )
        elif output.function == "last":
            latest = col(f"{base}_last", 0)
            start = F.col(_T) - F.lit(_micros_int(output.window))
            result = F.when(latest.getField("t") > start, latest.getField("v"))
        else:
            head = col(f"{base}_{output.function}_f{role}", 0)
            tail = col(f"{base}_{output.function}_b{role}", role)
            if output.function == "min":
                result = F.least(head, tail)
            elif output.function == "max":
                result = F.greatest(head, tail)
            else:
                both = F.hll_union(head, tail, True)
                sketch = F.when(head.isNull(), tail).when(tail.isNull(), head).otherwise(both)
                result = F.coalesce(F.hll_sketch_estimate(sketch), F.lit(0))
        columns.append(F.when(valid, result.cast(output.result_type)).alias(output.name))
    return collected.select(*columns)


# -- helpers ----------------------------------------------------------------------------------


def _merged_stddev(
    n_a: Column, mean_a: Column, m2_a: Column, n_b: Column, mean_b: Column, m2_b: Column
) -> Column:
    """Sample stddev of two parts given (count, mean, sum of squared deviations) each."""
    from pyspark.sql import functions as F

    na, nb = F.coalesce(n_a, F.lit(0)), F.coalesce(n_b, F.lit(0))
    n = na + nb
    delta = mean_b - mean_a
    both = m2_a + m2_b + delta * delta * na * nb / n
    m2 = F.when(nb == 0, m2_a).when(na == 0, m2_b).otherwise(both)
    return F.when(n > 1, F.sqrt(F.greatest(m2 / (n - 1), F.lit(0.0))))


def _micros(window: timedelta) -> Column:
    from pyspark.sql import functions as F

    return F.lit(_micros_int(window))


def _micros_int(window: timedelta) -> int:
    return window // timedelta(microseconds=1)


def _orderable(type_name: str) -> bool:
    """`rules.orderable` of a Spark type name (types featurelake does not know cannot be)."""
    try:
        kind: SqlType | None = SqlType.parse(type_name)
    except SchemaValidationError:
        kind = None
    return rules.orderable(kind)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
