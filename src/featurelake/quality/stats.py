"""Feature statistics: one Spark aggregation per group, stored per Delta version.

Numeric features get count, nulls, approximate distinct, mean, std (sample), min, max and
quantiles (`percentile_approx`, all in the same aggregation). Categorical features get their
top values from one more small job shared by every categorical feature.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurelake.registry import Registry, group_key
from featurelake.schema.keys import INGESTED_AT
from featurelake.schema.model import FeatureGroupSchema, FeatureSchema
from featurelake.schema.types import DataType, FeatureType
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

STATS = "stats"
SUMMARIES = "stats_summaries"
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
QUANTILE_ACCURACY = 10_000
"""`percentile_approx` accuracy: the rank error is at most rows / accuracy."""
TOP_K = 10
SUMMARY_POINTS: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))
"""The quantiles kept per numeric feature to fold appends into recorded statistics (and to
measure drift from them): every percent, the 0th and 100th included."""
HLL_LG_K = 11
"""`hll_sketch_agg` size: 2^11 buckets, a relative error of about 2.3%, ~1.3 kB a sketch."""


@dataclass(frozen=True)
class FeatureStatistics:
    """Statistics of one feature in one table version (None where they do not apply)."""

    name: str
    kind: str
    count: int
    null_count: int
    null_rate: float
    distinct_approx: int
    mean: float | None = None
    std: float | None = None
    min: Any = None
    max: Any = None
    quantiles: dict[str, float] = field(default_factory=dict)
    top_values: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureStatistics:
        values = dict(data)
        values["top_values"] = [tuple(v) for v in values.get("top_values", [])]
        return cls(**values)


@dataclass(frozen=True)
class GroupStatistics:
    """Statistics of every feature of a group version's table, at one Delta version."""

    group: str
    version: int
    delta_version: int | None
    row_count: int
    last_event: str | None
    last_updated: str | None
    computed_at: str
    features: dict[str, FeatureStatistics]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = {k: asdict(v) for k, v in self.features.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupStatistics:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["features"] = {
            k: FeatureStatistics.from_dict(v) for k, v in data["features"].items()
        }
        return cls(**values)


def is_numeric(feature: FeatureSchema) -> bool:
    return feature.data_type.is_numeric and feature.data_type.kind is not DataType.BOOLEAN


def is_categorical(feature: FeatureSchema) -> bool:
    return feature.feature_type is FeatureType.CATEGORICAL or feature.data_type.kind in (
        DataType.STRING,
        DataType.BOOLEAN,
    )


def _quantile_key(q: float) -> str:
    return f"p{round(q * 100):g}"


def compute_statistics(
    df: DataFrame,
    schema: FeatureGroupSchema,
    *,
    delta_version: int | None = None,
    top_k: int = TOP_K,
) -> GroupStatistics:
    """Statistics of `df` (a Gold table or a batch with the group's columns).

    One aggregation job for every feature, plus one for the top values of all categorical
    features together.
    """
    return profile(df, schema, delta_version=delta_version, top_k=top_k)[0]


def profile(
    df: DataFrame,
    schema: FeatureGroupSchema,
    *,
    delta_version: int | None = None,
    top_k: int = TOP_K,
    sketches: Mapping[str, bytes] | None = None,
) -> tuple[GroupStatistics, dict[str, dict[str, Any]]]:
    """`compute_statistics`, and the summaries that let later appends be folded in without
    reading the table again (`featurelake.quality.incremental`): per feature an HLL sketch of
    its values (base64) and, for numeric ones, `SUMMARY_POINTS` quantiles.

    With `sketches` (a feature's sketch of other rows), the sketch and distinct count returned
    are those of the union of `df` and those rows.
    """
    from pyspark.sql import functions as F

    aggs: list[Column] = [F.count(F.lit(1)).alias("__rows")]
    aggs.append(F.max(F.col(schema.timestamp_key)).alias("__last_event"))
    if INGESTED_AT in df.columns:
        aggs.append(F.max(F.col(INGESTED_AT)).alias("__last_updated"))
    summary_array = F.array(*[F.lit(q) for q in SUMMARY_POINTS])
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    for i, feature in enumerate(schema.features):
        if feature.name not in df.columns:
            continue
        col = F.col(feature.name)
        sketch = F.hll_sketch_agg(_sketchable(col, types[feature.name]), HLL_LG_K)
        other = (sketches or {}).get(feature.name)
        if other is not None:
            sketch = F.hll_union(sketch, F.lit(bytearray(other)))
        aggs += [F.count(col).alias(f"c{i}"), sketch.alias(f"h{i}")]
        if is_numeric(feature):
            x = col.cast("double")
            aggs += [
                F.avg(x).alias(f"mean{i}"),
                F.stddev_samp(x).alias(f"std{i}"),
                F.min(x).alias(f"min{i}"),
                F.max(x).alias(f"max{i}"),
                F.percentile_approx(x, summary_array, QUANTILE_ACCURACY).alias(f"q{i}"),
            ]
        elif feature.data_type.is_atomic:
            aggs += [F.min(col).alias(f"min{i}"), F.max(col).alias(f"max{i}")]
    aggregated = df.agg(*aggs)
    distinct = [
        F.hll_sketch_estimate(F.col(f"h{i}")).alias(f"d{i}")
        for i, f in enumerate(schema.features)
        if f.name in df.columns
    ]
    row = aggregated.select("*", *distinct).collect()[0].asDict()
    rows = int(row["__rows"])
    top = _top_values(df, schema, top_k)
    features: dict[str, FeatureStatistics] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for i, feature in enumerate(schema.features):
        if f"c{i}" not in row:
            continue
        count = int(row[f"c{i}"])
        nulls = rows - count
        numeric = is_numeric(feature)
        points = [float(v) for v in row[f"q{i}"]] if numeric and row.get(f"q{i}") else []
        summaries[feature.name] = {
            "sketch": base64.b64encode(bytes(row[f"h{i}"])).decode() if row[f"h{i}"] else None,
            "points": points,
        }
        quantiles = (
            {_quantile_key(q): points[SUMMARY_POINTS.index(q)] for q in QUANTILES} if points else {}
        )
        features[feature.name] = FeatureStatistics(
            name=feature.name,
            kind="numerical"
            if numeric
            else ("categorical" if is_categorical(feature) else "other"),
            count=count,
            null_count=nulls,
            null_rate=nulls / rows if rows else 0.0,
            distinct_approx=int(row[f"d{i}"] or 0),
            mean=_float(row.get(f"mean{i}")),
            std=_float(row.get(f"std{i}")),
            min=_plain(row.get(f"min{i}")),
            max=_plain(row.get(f"max{i}")),
            quantiles=quantiles,
            top_values=top.get(feature.name, []),
        )
    stats = GroupStatistics(
        group=schema.name,
        version=schema.version,
        delta_version=delta_version,
        row_count=rows,
        last_event=_iso(row.get("__last_event")),
        last_updated=_iso(row.get("__last_updated")),
        computed_at=utc_now().isoformat(),
        features=features,
    )
    return stats, summaries


def _sketchable(col: Column, type_name: str) -> Column:
    """The column as a type `hll_sketch_agg` takes (int, bigint, string or binary)."""
    if type_name in ("int", "bigint", "string", "binary"):
        return col
    if type_name in ("tinyint", "smallint"):
        return col.cast("int")
    return col.cast("string")


def value_counts(
    df: DataFrame, features: Sequence[str], *, limit: int | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Counts of each value (as text; null as None) of several columns, in one job."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not features:
        return {}
    pairs = F.explode(
        F.array(
            *[
                F.struct(F.lit(name).alias("feature"), F.col(name).cast("string").alias("value"))
                for name in features
            ]
        )
    ).alias("pair")
    counts = (
        df.select(pairs)
        .groupBy(F.col("pair.feature").alias("feature"), F.col("pair.value").alias("value"))
        .agg(F.count(F.lit(1)).alias("n"))
    )
    if limit is not None:
        window = Window.partitionBy("feature").orderBy(F.desc("n"), F.asc("value"))
        counts = counts.withColumn("rank", F.row_number().over(window)).where(
            F.col("rank") <= limit
        )
    out: dict[str, list[tuple[str, int]]] = {name: [] for name in features}
    for r in counts.collect():
        out[r["feature"]].append((r["value"], int(r["n"])))
    for values in out.values():
        values.sort(key=lambda item: (-item[1], str(item[0])))
    return out


def _top_values(
    df: DataFrame, schema: FeatureGroupSchema, top_k: int
) -> dict[str, list[tuple[str, int]]]:
    names = [f.name for f in schema.features if is_categorical(f) and f.name in df.columns]
    counts = value_counts(df, names, limit=top_k + 1)
    return {
        name: [(v, n) for v, n in values if v is not None][:top_k]
        for name, values in counts.items()
    }


def record_statistics(
    registry: Registry,
    stats: GroupStatistics,
    summaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Store statistics as a `stats` event of `group@version` (one per Delta version); with
    the `summaries` of `profile`, also a `stats_summaries` event holding both (in the same
    commit), which appends fold into (`featurelake.quality.incremental`)."""
    key = group_key(stats.group, stats.version)
    events: list[tuple[str, str, Mapping[str, Any]]] = [(STATS, key, stats.to_dict())]
    if summaries is not None:
        kept = {k: dict(v) for k, v in summaries.items()}
        events.append((SUMMARIES, key, {**stats.to_dict(), "summaries": kept}))
    registry.append_events(events)


def statistics_history(
    registry: Registry, group: str, version: int
) -> dict[int | None, GroupStatistics]:
    """Stored statistics of a group version by Delta version (latest computation wins)."""
    out: dict[int | None, GroupStatistics] = {}
    for event in registry.events(STATS, group_key(group, version)):
        stats = GroupStatistics.from_dict(event)
        out[stats.delta_version] = stats
    return dict(sorted(out.items(), key=lambda item: -1 if item[0] is None else item[0]))


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
