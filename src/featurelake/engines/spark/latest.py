"""Latest value per entity on Spark, for Gold tables and virtual queries alike.

A store only says where a group's rows come from (`frame_for(schema, features)`: the Gold table,
a virtual query, ...); what "the latest value per entity as of a time" means is decided here,
once, so materialized and virtual groups read alike.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurelake.engines.spark.frames import entity_filter_frame
from featurelake.plan import rules
from featurelake.plan.refs import Selected, output_names, shared_entity_keys
from featurelake.schema import FeatureGroupSchema, SqlType
from featurelake.times import spark_time_literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ISIN_LIMIT = 10_000

FrameFor = Callable[[FeatureGroupSchema, list[str]], "DataFrame"]


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
    them into its scan (a Delta table or a virtual query). The latest row is the first of
    `rules.latest_order` (the tie-breakers: every orderable feature of the group), so the answer
    depends neither on the plan nor on which features are requested.
    """
    from pyspark.sql import functions as F

    keys = shared_entity_keys(selected)
    ids = (
        None
        if entity_ids is None
        else entity_filter_frame(
            spark, entity_ids, keys, what="entity_ids", max_literals=ISIN_LIMIT
        )
    )
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
        types = {f.name: SqlType.known_spark_type(f.dataType) for f in table.schema.fields}
        ties = rules.tie_breakers(schema.feature_names, types)
        # max_by over a struct: Spark compares structs field by field, nulls lowest, which is
        # the rule's ordering (greatest first, nulls lowest).
        order = [F.col(key.column) for key in rules.latest_order(ts, ties)]
        latest = table.groupBy(*keys).agg(
            F.max_by(F.struct(F.col(ts), *[F.col(f) for f in features]), F.struct(*order)).alias(
                "_latest"
            )
        )
        columns = [F.col(k) for k in keys]
        if len(selected) == 1:
            columns.append(F.col(f"_latest.{ts}").alias(ts))
        columns += [F.col(f"_latest.{f}").alias(names[(schema.name, f)]) for f in features]
        frame = latest.select(*columns)
        result = frame if result is None else result.join(frame, on=list(keys), how="full")
    assert result is not None
    return result
