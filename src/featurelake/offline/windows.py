"""Windowed aggregations as of each entity row, in one sort-based pass over rows + events.

For an entity row `(keys, t)` a window `w` covers the events of its keys with
`t - w < event_ts <= t` (an event exactly at `t - w` is out, one exactly at `t` is in).

How it runs, without joining entity rows to events:

- Each entity row becomes one row at `t` plus one probe per window at `t - w` (all sharing a
  row id); they are unioned with the events and partitioned by the keys (one shuffle).
- `count`, `sum` and `avg` come from running totals (count, sum) ordered by time, events
  before rows at equal times: the window's value is the total at `t` minus the total at
  `t - w`. `last` is the latest non-null value carried forward to `t`, kept when its event time
  is after `t - w`.
- `min`, `max`, `stddev` and `approx_count_distinct` are not subtracted (stddev from
  differences of sums of squares would lose precision). Time is cut into tiles as long as the
  window (aligned on the epoch), so `(t - w, t]` is the head of the tile holding `t` (a running
  aggregate from the tile's start up to `t`) plus the tail of the previous tile after `t - w`
  (the same running aggregate in reverse time order, read at the probe); the two parts are
  merged (stddev with Chan's formula over count, mean and squared deviations). Two running
  aggregates per such window: each row and event is touched a constant number of times.
- A group-by on (keys, row id) puts each row's values and its probes' values together; the
  rows are already partitioned by the keys, so it needs no second shuffle.

Every aggregate runs over a frame from the partition start to the current row, which Spark
computes incrementally, so the cost grows with entity rows plus events, never with their
product on a busy key (a sliding RANGE frame would recompute min/max per row). Several
functions and windows of one source share the same pass.

Floating-point sums are differences of running totals: exact up to rounding of the key's
running total (about 1e-16 of it). The running order is fixed (time, then the values), and
every event up to the latest entity time is read, so a window value does not depend on which
other entity rows were asked for. `approx_count_distinct` uses HyperLogLog sketches
(lgConfigK 12: relative standard error about 1.6%); integers and strings are hashed as they
are, other types as their string form. Only DataFrame functions are used (no UDFs, no RDDs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from featurelake.errors import PointInTimeError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

HLL_LG_CONFIG_K = 12
"""HyperLogLog size of approx_count_distinct: 2^12 buckets, relative standard error ~1.6%."""

INVERTIBLE = ("count", "sum", "avg")
TILED = ("min", "max", "stddev", "approx_count_distinct")

_P = "__win_"
_T = f"{_P}t"  # time in epoch microseconds
_KIND = f"{_P}kind"  # 0 event, 1 entity row or probe
_RID = f"{_P}rid"
_ROLE = f"{_P}role"  # 0 the entity row at t, i > 0 the probe at t - windows[i - 1]
_ROW = f"{_P}row"


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


def window_aggregates(
    entity_df: DataFrame,
    events: DataFrame,
    keys: Sequence[str],
    event_time: str,
    entity_time: str,
    outputs: Sequence[WindowOutput],
    *,
    what: str = "the aggregation",
) -> DataFrame:
    """Every row of `entity_df` once, with each output computed over its window as of the row's
    `entity_time`. Rows with a null key or time get null outputs.

    Checks columns, types and filters before any Spark job; one small aggregation reads the
    latest entity time (events after it are not read).
    """
    from pyspark.sql import functions as F

    if not outputs:
        return entity_df
    key_types = _check(entity_df, events, keys, event_time, entity_time, outputs, what)
    feeds = _value_columns(events, outputs, what)
    values = list({v.name: v for v in feeds.values()}.values())
    windows = sorted({o.window for o in outputs})
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
            *[F.lit(None).cast(v.spark_type).alias(v.name) for v in values],
        )
        .where(F.col(_T).isNotNull() | (F.col(_ROLE) == 0))  # a row without time stays
    )
    row_type = entity_side.schema[_ROW].dataType
    keep = F.col(_q(event_time)).isNotNull()
    for key in keys:
        keep = keep & F.col(_q(key)).isNotNull()
    if latest_time is not None:
        keep = keep & (F.col(_q(event_time)) <= F.lit(latest_time))
    event_side = events.where(keep).select(
        *[
            F.col(_q(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ],
        F.unix_micros(F.col(_q(event_time)).cast("timestamp")).alias(_T),
        F.lit(0).alias(_KIND),
        F.lit(None).cast("bigint").alias(_RID),
        F.lit(None).cast("int").alias(_ROLE),
        F.lit(None).cast(row_type).alias(_ROW),
        *[v.expression.alias(v.name) for v in values],
    )
    unioned = entity_side.unionByName(event_side)
    computed = _running(unioned, key_columns, feeds, outputs, windows)
    collected = _per_row(computed, key_columns, feeds, outputs, windows)
    return _finish(collected, entity_df, entity_time, keys, feeds, outputs, windows)


# -- checks -------------------------------------------------------------------------------------


def _check(
    entity_df: DataFrame,
    events: DataFrame,
    keys: Sequence[str],
    event_time: str,
    entity_time: str,
    outputs: Sequence[WindowOutput],
    what: str,
) -> list[DataType]:
    from pyspark.sql import types as T

    entity_types = {f.name: f.dataType for f in entity_df.schema.fields}
    event_types = {f.name: f.dataType for f in events.schema.fields}
    for column in (*keys, entity_time):
        if column not in entity_types:
            raise PointInTimeError(
                f"The entity DataFrame has no column '{column}' needed by {what}.",
                fix=f"add '{column}' to the entity rows.",
                column=column,
            )
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
    """A value column of the events: `column` converted to `target`, where `filter` holds."""

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
        name = f"{_P}v{len(values)}"
        values[key] = _Value(name, output.column, output.filter, target, base, spark_type)
        feeds[output.name] = values[key]
    return feeds


def _running(
    unioned: DataFrame,
    key_columns: Sequence[str],
    feeds: dict[str, _Value],
    outputs: Sequence[WindowOutput],
    windows: Sequence[timedelta],
) -> DataFrame:
    """Running totals over time, and forward/reverse running aggregates within window tiles."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = sorted({v.name: v.spark_type for v in feeds.values()}.items())
    tie_breakers = [F.col(n).asc_nulls_first() for n, kind in names if _orderable(kind)]
    ordered = (
        Window.partitionBy(*key_columns)
        .orderBy(F.col(_T).asc(), F.col(_KIND).asc(), *tie_breakers)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    columns: list[Column] = [
        *[F.col(k) for k in key_columns],
        F.col(_RID),
        F.col(_ROLE),
        F.col(_ROW),
        F.col(_T),
    ]
    done: set[str] = set()

    def add(name: str, column: Column) -> None:
        if name not in done:
            done.add(name)
            columns.append(column.alias(name))

    for output in outputs:
        value = feeds[output.name]
        v = F.col(value.name)
        if output.function in INVERTIBLE:
            add(f"{value.name}_n", F.count(v).over(ordered))
            if output.function != "count":
                add(f"{value.name}_s", F.sum(v).over(ordered))
        elif output.function == "last":
            latest = F.when(v.isNotNull(), F.struct(F.col(_T).alias("t"), v.alias("v")))
            add(f"{value.name}_last", F.last(latest, ignorenulls=True).over(ordered))
    for index, window in enumerate(windows, start=1):
        tiled = [o for o in outputs if o.window == window and o.function in TILED]
        if not tiled:
            continue
        tile = F.floor(F.col(_T) / F.lit(_micros_int(window)))
        forward = (
            Window.partitionBy(*key_columns, tile)
            .orderBy(F.col(_T).asc(), F.col(_KIND).asc())
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        backward = (
            Window.partitionBy(*key_columns, tile)
            .orderBy(F.col(_T).desc(), F.col(_KIND).desc())
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        for output in tiled:
            value = feeds[output.name]
            v = F.col(value.name)
            for direction, spec in (("f", forward), ("b", backward)):
                name = f"{value.name}_{output.function}_{direction}{index}"
                if output.function == "min":
                    add(name, F.min(v).over(spec))
                elif output.function == "max":
                    add(name, F.max(v).over(spec))
                elif output.function == "stddev":
                    add(f"{name}_n", F.count(v).over(spec))
                    add(f"{name}_m", F.avg(v).over(spec))
                    add(f"{name}_d", F.var_pop(v).over(spec) * F.count(v).over(spec))
                else:
                    add(name, F.hll_sketch_agg(v, HLL_LG_CONFIG_K).over(spec))
    return unioned.select(*columns).where(F.col(_RID).isNotNull())


def _per_row(
    computed: DataFrame,
    key_columns: Sequence[str],
    feeds: dict[str, _Value],
    outputs: Sequence[WindowOutput],
    windows: Sequence[timedelta],
) -> DataFrame:
    """One row per entity row: its own values (role 0) beside its probes' (role i)."""
    from pyspark.sql import functions as F

    index_of = {w: i for i, w in enumerate(windows, start=1)}

    def pick(source: str, role: int) -> Column:  # the one non-null value of the row id
        return F.first(F.when(F.col(_ROLE) == role, F.col(source)), ignorenulls=True)

    aggregations = [pick(_ROW, 0).alias(_ROW), pick(_T, 0).alias(_T)]
    taken: set[str] = set()

    def take(source: str, role: int) -> None:
        alias = f"{source}@{role}"
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
                take(f"{value.name}_{part}", role)
        elif output.function == "last":
            take(f"{value.name}_last", 0)
        elif output.function == "stddev":
            for part in ("n", "m", "d"):
                take(f"{value.name}_stddev_f{role}_{part}", 0)
                take(f"{value.name}_stddev_b{role}_{part}", role)
        else:
            take(f"{value.name}_{output.function}_f{role}", 0)
            take(f"{value.name}_{output.function}_b{role}", role)
    # Grouped by the keys too: the rows are already partitioned by them, so no new shuffle.
    return computed.groupBy(*key_columns, _RID).agg(*aggregations)


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
                col(f"{base}_n", role), F.lit(0)
            )
            if output.function == "count":
                result = n
            else:
                s = F.coalesce(col(f"{base}_s", 0), F.lit(0.0)) - F.coalesce(
                    col(f"{base}_s", role), F.lit(0.0)
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
    return not type_name.startswith(("map", "variant", "binary"))


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
