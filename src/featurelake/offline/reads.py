"""Reads shared by every offline store: resolving feature references and latest-per-entity values.

A store only says where a group's rows come from (`frame_for(schema, features)`: the Gold table,
a virtual query, ...); what "the latest value per entity as of a time" means is decided here,
once, so materialized and virtual groups read alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurelake.errors import PointInTimeError, SchemaValidationError
from featurelake.offline.frames import entity_filter_frame
from featurelake.schema import INGESTED_AT, FeatureGroupSchema, parse_refs
from featurelake.schema.refs import two_versions_error
from featurelake.times import spark_time_literal

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

    from featurelake.registry import Registry

ISIN_LIMIT = 10_000

Selected = dict[str, tuple[FeatureGroupSchema, list[str]]]
FrameFor = Callable[[FeatureGroupSchema, list[str]], "DataFrame"]


def resolve_refs(registry: Registry, feature_refs: str | Sequence[str]) -> Selected:
    """Group -> (schema, features) for the refs; unknown groups/features raise first."""
    selected: Selected = {}
    for ref in parse_refs(feature_refs):
        schema = registry.get_group(ref.group, ref.version)
        entry = selected.setdefault(ref.group, (schema, []))
        if entry[0].version != schema.version:
            raise two_versions_error(ref.group, entry[0].version, schema.version)
        wanted = schema.feature_names if ref.is_wildcard else (schema.feature(ref.feature).name,)
        entry[1].extend(f for f in wanted if f not in entry[1])
    return selected


def output_names(selected: Selected) -> dict[tuple[str, str], str]:
    """Column name per (group, feature): the feature name, or `group__feature` on a clash."""
    counts: dict[str, int] = {}
    for _, features in selected.values():
        for feature in features:
            counts[feature] = counts.get(feature, 0) + 1
    return {
        (schema.name, feature): feature if counts[feature] == 1 else f"{schema.name}__{feature}"
        for schema, features in selected.values()
        for feature in features
    }


def check_entity_keys(selected: Selected, columns: Collection[str]) -> None:
    """Every selected group's entity keys are among the entity rows' `columns`."""
    for schema, _ in selected.values():
        missing = [k for k in schema.entity_keys if k not in columns]
        if missing:
            raise PointInTimeError(
                f"entity_df has no column {missing} for the entity keys of group "
                f"'{schema.name}' ({list(schema.entity_keys)}).",
                fix=f"add the key column(s) {missing} to entity_df, or drop the refs of "
                f"'{schema.name}'.",
                group=schema.name,
            )


def entity_timestamp_column(
    columns: Sequence[str],
    timestamp_typed: Sequence[str],
    requested: str | None,
    selected: Selected,
) -> str:
    """The entity rows' time column: `requested`; else `event_timestamp` or a selected group's
    timestamp key; else the one column of a timestamp type (`timestamp_typed`)."""
    if requested:
        if requested not in columns:
            raise PointInTimeError(
                f"entity_df has no column '{requested}'.",
                fix=f"pass timestamp_column= one of {list(columns)}.",
            )
        return requested
    candidates = {schema.timestamp_key for schema, _ in selected.values()}
    for name in ("event_timestamp", *sorted(candidates)):
        if name in columns:
            return name
    if len(timestamp_typed) == 1:
        return str(timestamp_typed[0])
    raise PointInTimeError(
        "Cannot tell which column of entity_df holds the event time.",
        fix="pass timestamp_column='...' (the time each entity row was observed).",
    )


def entity_output_names(
    selected: Selected, entity_columns: Collection[str]
) -> dict[tuple[str, str], str]:
    """`output_names`, with `group__feature` where a name is already an entity column."""
    names = output_names(selected)
    for (group, feature), name in list(names.items()):
        if name in entity_columns:
            names[(group, feature)] = f"{group}__{feature}"
    return names


def shared_entity_keys(selected: Selected) -> tuple[str, ...]:
    """The entity keys every selected group shares, or an error naming the mismatch."""
    keys = next(iter(selected.values()))[0].entity_keys
    for schema, _ in selected.values():
        if schema.entity_keys != keys:
            raise SchemaValidationError(
                f"get_features mixes groups with different entity keys "
                f"({list(keys)} vs {list(schema.entity_keys)}).",
                fix="read each group separately, or use get_historical_features with an "
                "entity DataFrame holding every key.",
            )
    return keys


def latest_features(
    spark: SparkSession,
    selected: Selected,
    frame_for: FrameFor,
    entity_ids: Any = None,
    point_in_time: datetime | None = None,
) -> DataFrame:
    """The latest value per entity of the selected features, as of `point_in_time`.

    `frame_for(schema, features)` gives a group's rows (keys, event time, the features and
    `_ingested_at`). Filters on entity ids and time are applied to that frame, so Spark pushes
    them into its scan (a Delta table or a virtual query). The latest row is the one with the
    greatest (event time, `_ingested_at`); exact ties go to the row with the greatest values of
    the group's features in declaration order (nulls lowest; the point-in-time join's rule when
    every feature is requested), so the answer depends neither on the plan nor on which
    features are requested.
    """
    from pyspark.sql import functions as F

    keys = shared_entity_keys(selected)
    ids = (
        None
        if entity_ids is None
        else entity_filter_frame(spark, entity_ids, keys, what="entity_ids")
    )
    if isinstance(ids, list) and len(ids) > ISIN_LIMIT:
        ids = spark.createDataFrame([(v,) for v in ids], [keys[0]])
    result: DataFrame | None = None
    names = output_names(selected)
    for schema, features in selected.values():
        table = frame_for(schema, features)
        ts = schema.timestamp_key
        if point_in_time is not None:
            table = table.where(F.col(ts) <= spark_time_literal(point_in_time))
        if isinstance(ids, list):
            table = table.where(F.col(keys[0]).isin(ids))
        elif ids is not None:
            table = table.join(F.broadcast(ids), on=list(keys), how="left_semi")
        types = {f.name: f.dataType for f in table.schema.fields}
        tie_breakers: list[Column] = [
            F.col(f) for f in schema.feature_names if f in types and _orderable(types[f])
        ]
        latest = table.groupBy(*keys).agg(
            F.max_by(
                F.struct(F.col(ts), *[F.col(f) for f in features]),
                F.struct(F.col(ts), F.col(INGESTED_AT), *tie_breakers),
            ).alias("_latest")
        )
        columns = [F.col(k) for k in keys]
        if len(selected) == 1:
            columns.append(F.col(f"_latest.{ts}").alias(ts))
        columns += [F.col(f"_latest.{f}").alias(names[(schema.name, f)]) for f in features]
        frame = latest.select(*columns)
        result = frame if result is None else result.join(frame, on=list(keys), how="full")
    assert result is not None
    return result


def _orderable(kind: DataType) -> bool:
    """True when Spark can order values of this type (maps and variants cannot)."""
    from pyspark.sql import types as T

    if isinstance(kind, T.ArrayType):
        return _orderable(kind.elementType)
    if isinstance(kind, T.StructType):
        return all(_orderable(f.dataType) for f in kind.fields)
    return not isinstance(kind, T.MapType | T.VariantType | T.UserDefinedType)
