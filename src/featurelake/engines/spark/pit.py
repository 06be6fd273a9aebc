"""The point-in-time rules of `plan.rules` compiled to Spark: one sort-based pass per key set.

For each entity row `(keys, t)` and each source group, a feature takes the value of the latest
event of that group that counts as of `t` (`plan.rules`: event time `<= t`, within the ttl,
ties by `_ingested_at` and then by the carried feature values, nulls lowest), else null.

How it runs: the entity rows and the feature rows (pruned to the needed columns and to
`rules.event_time_bounds`) are unioned with a marker, partitioned by the entity keys and ordered
by time, feature rows before entity rows at the same time. A running `last(..., ignorenulls)`
window carries the latest feature event (one struct per `rules.carry_units` unit) forward to each
entity row; entity rows carry a null feature struct and feature rows a null entity struct, so
nothing needs joining back. All sources with the same key set share one pass (one shuffle);
passes for different key sets are chained. No join explosion, no UDFs, no RDDs: it runs unchanged
over Spark Connect. A unit whose features cannot be ordered (`rules.unit_orderable`) resolves
exact ties to an arbitrary one of the tied rows; writers give every write its own
`_ingested_at`, so such ties do not arise from the store itself.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from featurelake.errors import PointInTimeError
from featurelake.plan import rules
from featurelake.plan.rules import check_fill, check_ttl
from featurelake.schema import SqlType

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

INGESTED_AT = "_ingested_at"
# Internal column names of the unioned frame. Entity columns travel inside _ROW, so user
# column names can never clash with these.
_PREFIX = "__pit_"
_TIME = f"{_PREFIX}t"
_IS_ENTITY = f"{_PREFIX}is_entity"
_INGESTED = f"{_PREFIX}ingested"
_ROW = f"{_PREFIX}row"
_EVENT_FIELD = "t"


@dataclass(frozen=True)
class PitSource:
    """Feature rows of one group to join as of each entity row's time."""

    group: str
    """Group name, used in errors."""
    df: DataFrame
    """Has the entity keys, `timestamp_key`, the feature columns and `_ingested_at`."""
    entity_keys: tuple[str, ...]
    """Key columns, present in both `df` and the entity DataFrame."""
    timestamp_key: str
    """Event time column of `df` (timestamp)."""
    features: tuple[str, ...]
    """Feature columns of `df` to bring."""
    output_names: Mapping[str, str] = field(default_factory=dict)
    """Feature column -> output column name; a feature not listed keeps its own name."""
    ttl: timedelta | None = None
    """How long an event stays valid: used only when `t - event_ts <= ttl`."""

    def output_name(self, feature: str) -> str:
        """The output column of `feature`."""
        return self.output_names.get(feature, feature)


def point_in_time_join(
    entity_df: DataFrame,
    sources: Sequence[PitSource],
    timestamp_column: str,
    fill: Literal["none", "last_non_null"] = "none",
) -> DataFrame:
    """Every row of `entity_df` once, with each source's features as of its `timestamp_column`.

    `fill="none"`: a feature takes its value from the latest event (a null there stays null).
    `fill="last_non_null"`: each feature independently takes its latest non-null value, the
    ttl measured on that value's own event time. Entity rows with a null key or time get null
    features. The entity time may be a timestamp, a date or a string castable to a timestamp;
    it is cast only for comparison and returned unchanged.

    Everything is validated before any Spark job runs (errors raise `PointInTimeError`); then
    one small aggregation reads the entity time range, and the result is built lazily.
    """
    from pyspark.sql import functions as F

    plan = _validate(entity_df, sources, timestamp_column, fill)
    if not sources:
        return entity_df

    bounds = _time_bounds(entity_df, timestamp_column)
    current = entity_df
    for index in range(len(plan.passes)):
        current = _one_pass(current, index, plan, timestamp_column, fill, bounds)
    outputs = [F.col(_quote(c)) for c in entity_df.columns]
    outputs += [F.col(_quote(s.output_name(f))) for s in sources for f in s.features]
    return current.select(*outputs)


# -- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    passes: list[list[PitSource]]
    key_types: dict[tuple[int, str], DataType]  # (pass index, key) -> common type
    pass_keys: list[tuple[str, ...]]


def _validate(
    entity_df: DataFrame, sources: Sequence[PitSource], timestamp_column: str, fill: str
) -> _Plan:
    from pyspark.sql import types as T

    check_fill(fill)
    entity_schema = entity_df.schema
    entity_columns = [f.name for f in entity_schema.fields]
    entity_types = {f.name: f.dataType for f in entity_schema.fields}
    rules.check_entity_columns(entity_columns)
    _require_column(entity_columns, timestamp_column, "the entity DataFrame", "timestamp_column")
    time_type = entity_types[timestamp_column]
    if not isinstance(time_type, T.TimestampType | T.TimestampNTZType | T.DateType | T.StringType):
        raise rules.not_a_time(timestamp_column, time_type.simpleString(), "F.to_timestamp")

    seen_outputs: dict[str, str] = {c.lower(): "the entity DataFrame" for c in entity_columns}
    passes: dict[frozenset[str], list[PitSource]] = {}
    for source in sources:
        if not isinstance(source, PitSource):
            raise PointInTimeError(
                f"Sources must be PitSource objects, got {type(source).__name__}.",
                fix="wrap each group's feature rows in PitSource(...).",
            )
        where = f"group '{source.group}'"
        if not source.entity_keys:
            raise PointInTimeError(
                f"The {where} has no entity keys.",
                fix="declare the key columns that link its rows to entity rows.",
                group=source.group,
            )
        if not source.features:
            raise PointInTimeError(
                f"No features are requested from {where}.",
                fix="request at least one feature of the group, or leave the group out.",
                group=source.group,
            )
        check_ttl(source.group, source.ttl)
        source_schema = source.df.schema
        source_columns = [f.name for f in source_schema.fields]
        source_types = {f.name: f.dataType for f in source_schema.fields}
        for key in source.entity_keys:
            _require_column(
                entity_columns,
                key,
                "the entity DataFrame",
                f"entity key of {where}",
                fix=f"add the key column '{key}' to the entity DataFrame.",
            )
            _require_column(source_columns, key, f"the feature rows of {where}", "entity key")
        _require_column(
            source_columns, source.timestamp_key, f"the feature rows of {where}", "timestamp_key"
        )
        _require_column(
            source_columns,
            INGESTED_AT,
            f"the feature rows of {where}",
            "ingestion time",
            fix=f"read the group's Gold table, which has '{INGESTED_AT}', or add that column.",
        )
        for column, role in ((source.timestamp_key, "event time"), (INGESTED_AT, "ingestion")):
            kind = source_types[column]
            if not isinstance(kind, T.TimestampType | T.TimestampNTZType | T.DateType):
                raise PointInTimeError(
                    f"The {role} column '{column}' of {where} has type {kind.simpleString()}.",
                    fix=f"make '{column}' a timestamp column.",
                    group=source.group,
                )
        for feature in source.features:
            _require_column(source_columns, feature, f"the feature rows of {where}", "feature")
            output = source.output_name(feature)
            if not isinstance(output, str) or not output:
                raise PointInTimeError(
                    f"The output name of feature '{feature}' of {where} is {output!r}.",
                    fix="map every feature to a non-empty column name in output_names.",
                    group=source.group,
                )
            clash = seen_outputs.get(output.lower())
            if clash is not None:
                raise PointInTimeError(
                    f"The output column '{output}' of feature '{feature}' of {where} clashes "
                    f"with a column of {clash}.",
                    fix="give the feature another name in output_names (e.g. "
                    f"'{source.group}__{feature}'), or rename the entity column.",
                    group=source.group,
                    column=output,
                )
            seen_outputs[output.lower()] = f"{where} (feature '{feature}')"
        passes.setdefault(frozenset(source.entity_keys), []).append(source)

    plan_passes = list(passes.values())
    pass_keys = [p[0].entity_keys for p in plan_passes]
    key_types: dict[tuple[int, str], DataType] = {}
    for index, (keys, group_sources) in enumerate(zip(pass_keys, plan_passes, strict=True)):
        for key in keys:
            key_types[(index, key)] = _common_key_type(key, entity_types[key], group_sources)
    return _Plan(passes=plan_passes, key_types=key_types, pass_keys=pass_keys)


def _require_column(
    columns: Sequence[str], name: str, where: str, role: str, *, fix: str | None = None
) -> None:
    if name in columns:
        return
    near = [c for c in columns if c.lower() == str(name).lower()]
    hint = f" (did you mean '{near[0]}'? names are matched exactly)" if near else ""
    raise PointInTimeError(
        f"The {role} column '{name}' is not a column of {where}{hint}. "
        f"Its columns are: {', '.join(columns)}.",
        fix=fix or f"use one of those columns as the {role}, or add '{name}'.",
        column=name,
    )


def _common_key_type(key: str, entity_type: DataType, sources: Sequence[PitSource]) -> DataType:
    """The type both sides of a key are compared as (`rules.common_key_type`); equal Spark types
    need no cast."""
    found = [("the entity DataFrame", entity_type)]
    found += [(f"group '{s.group}'", s.df.schema[key].dataType) for s in sources]
    if all(kind == entity_type for _, kind in found):
        return entity_type
    sides = [(where, SqlType.known_spark_type(kind), kind.simpleString()) for where, kind in found]
    return rules.common_key_type(key, sides).to_spark()


# -- execution --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bounds:
    """Entity time range in epoch microseconds (None when every entity time is null)."""

    min_us: int | None
    max_us: int | None


def _time_bounds(entity_df: DataFrame, timestamp_column: str) -> _Bounds:
    """One small aggregation: the range of entity times, to prune feature rows early."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    time = _entity_time(timestamp_column)
    try:
        row = entity_df.select(
            F.unix_micros(F.min(time)).alias("lo"), F.unix_micros(F.max(time)).alias("hi")
        ).first()
    except PySparkException as error:
        condition = error.getCondition() or ""
        if condition.startswith("CAST_INVALID_INPUT"):
            raise rules.unreadable_times(
                timestamp_column, str(error), "F.to_timestamp(column, format)"
            ) from error
        raise
    assert row is not None
    return _Bounds(min_us=row["lo"], max_us=row["hi"])


def _entity_time(timestamp_column: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(_quote(timestamp_column)).cast("timestamp")


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _one_pass(
    current: DataFrame,
    index: int,
    plan: _Plan,
    timestamp_column: str,
    fill: str,
    bounds: _Bounds,
) -> DataFrame:
    """Join every source sharing one key set to `current` with a single shuffle."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    sources = plan.passes[index]
    keys = plan.pass_keys[index]
    key_columns = [f"{_PREFIX}k{i}" for i in range(len(keys))]
    key_types = [plan.key_types[(index, key)] for key in keys]
    row_type: StructType = current.schema

    # One carried struct per source (fill="none") or per feature (fill="last_non_null"):
    # (name, type, builder from the source frame). Each holds the event time and value(s).
    carried: list[tuple[PitSource, str, T.StructType, rules.CarryUnit]] = []
    for s_index, source in enumerate(sources):
        types = {f.name: f.dataType for f in source.df.schema.fields}
        event = T.StructField(_EVENT_FIELD, T.TimestampType(), True)
        for u_index, unit in enumerate(rules.carry_units(source.features, fill)):
            fields = [T.StructField(f"v{i}", types[f], True) for i, f in enumerate(unit.features)]
            name = f"{_PREFIX}s{s_index}_{u_index}"
            carried.append((source, name, T.StructType([event, *fields]), unit))

    def null(kind: DataType) -> Column:
        return F.lit(None).cast(kind)

    entity_side = current.select(
        *[
            F.col(_quote(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ],
        _entity_time(timestamp_column).alias(_TIME),
        F.lit(True).alias(_IS_ENTITY),
        null(T.TimestampType()).alias(_INGESTED),
        F.struct(*[F.col(_quote(c)) for c in current.columns]).alias(_ROW),
        *[null(struct_type).alias(name) for _, name, struct_type, _ in carried],
    )

    frames = [entity_side]
    for source in sources:
        event_time = F.col(_quote(source.timestamp_key)).cast("timestamp")
        keep = event_time.isNotNull()
        for key in keys:
            keep = keep & F.col(_quote(key)).isNotNull()
        needed = rules.event_time_bounds(bounds.min_us, bounds.max_us, source.ttl)
        if needed is None:
            keep = F.lit(False)
        else:
            low, high = needed
            keep = keep & (event_time <= F.timestamp_micros(F.lit(high)))
            if low is not None:
                keep = keep & (event_time >= F.timestamp_micros(F.lit(low)))
        columns: list[Column] = [
            F.col(_quote(k)).cast(kind).alias(c)
            for k, kind, c in zip(keys, key_types, key_columns, strict=True)
        ]
        columns += [
            event_time.alias(_TIME),
            F.lit(False).alias(_IS_ENTITY),
            F.col(INGESTED_AT).cast("timestamp").alias(_INGESTED),
            null(row_type).alias(_ROW),
        ]
        for owner, name, struct_type, unit in carried:
            if owner is not source:
                columns.append(null(struct_type).alias(name))
                continue
            values = [F.col(_quote(f)).alias(f"v{i}") for i, f in enumerate(unit.features)]
            value = F.struct(event_time.alias(_EVENT_FIELD), *values)
            if unit.required is not None:
                value = F.when(F.col(_quote(unit.required)).isNotNull(), value)
            columns.append(value.cast(struct_type).alias(name))
        frames.append(source.df.where(keep).select(*columns))
    unioned = functools.reduce(lambda a, b: a.union(b), frames)

    # Feature rows sort before entity rows at the same time (event_ts <= t is included); then
    # _ingested_at, then the feature values themselves for exact ties (see module docstring).
    order = [
        F.col(_TIME).asc_nulls_first(),
        F.col(_IS_ENTITY).asc(),
        F.col(_INGESTED).asc_nulls_first(),
    ]
    order += [
        F.col(name).asc_nulls_first()
        for source, name, _, unit in carried
        if rules.unit_orderable(unit, _known_types(source.df))
    ]
    window = (
        Window.partitionBy(*key_columns)
        .orderBy(*order)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = unioned.select(
        F.col(_ROW),
        F.col(_TIME),
        F.col(_IS_ENTITY),
        *[F.last(name, ignorenulls=True).over(window).alias(name) for _, name, _, _ in carried],
    ).where(F.col(_IS_ENTITY))

    outputs = [F.col(_ROW).getField(c).alias(c) for c in current.columns]
    for source, name, _, unit in carried:
        valid: Column | None = None
        if source.ttl is not None:
            valid = F.col(_TIME) <= F.col(name).getField(_EVENT_FIELD) + F.lit(source.ttl)
        for i, feature in enumerate(unit.features):
            value = F.col(name).getField(f"v{i}")
            if valid is not None:
                value = F.when(valid, value)
            outputs.append(value.alias(source.output_name(feature)))
    return latest.select(*outputs)


def _known_types(df: DataFrame) -> dict[str, SqlType | None]:
    return {f.name: SqlType.known_spark_type(f.dataType) for f in df.schema.fields}
