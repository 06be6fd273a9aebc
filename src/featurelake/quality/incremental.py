"""Statistics and drift of a Delta version that only appended rows, at the cost of those rows.

An append changes no existing row, so the statistics of the new version follow from those
recorded for the version before it (with their summaries, `stats.profile`) and a profile of the
commit's rows, read from the table's change data feed: a write of 10k rows into a table of
millions profiles 10k rows. Counts, nulls, min, max, mean and std combine exactly; distinct
counts through the union of HLL sketches; quantiles through the mixture of both sides'
quantile summaries (every percent: a rank error of about one percent); top values add up the
counts both sides kept (exact while a feature has at most `TOP_K` values). Drift of the new
version against the previous one is measured on the same summaries, without reading rows.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from featurelake.quality.drift import (
    NULL_VALUE,
    PSI_QUANTILES,
    DriftLimits,
    DriftReport,
    FeatureDrift,
)
from featurelake.quality.stats import (
    SUMMARIES,
    SUMMARY_POINTS,
    TOP_K,
    FeatureStatistics,
    GroupStatistics,
    is_categorical,
    is_numeric,
    profile,
)
from featurelake.registry import Registry, group_key
from featurelake.schema.model import FeatureGroupSchema
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

Summaries = dict[str, dict[str, Any]]
OTHER_VALUES = "<other>"


def recorded(
    registry: Registry, schema: FeatureGroupSchema, delta_version: int
) -> tuple[GroupStatistics, Summaries] | None:
    """The statistics recorded for `delta_version` with summaries of every feature, or None."""
    events = registry.events(SUMMARIES, group_key(schema.name, schema.version))
    for event in reversed(events):
        if event.get("delta_version") != delta_version:
            continue
        summaries = event.get("summaries") or {}
        if all(f.name in summaries for f in schema.features):
            return GroupStatistics.from_dict(event), summaries
        return None
    return None


def fold_append(
    previous: GroupStatistics,
    previous_summaries: Summaries,
    appended: DataFrame,
    schema: FeatureGroupSchema,
    *,
    delta_version: int,
    top_k: int = TOP_K,
) -> tuple[GroupStatistics, Summaries]:
    """Statistics (and summaries) of the version made by appending `appended` to the version
    that `previous` describes; one aggregation over `appended` (plus one for top values)."""
    sketches = {
        name: base64.b64decode(s["sketch"])
        for name, s in previous_summaries.items()
        if s.get("sketch")
    }
    batch, batch_summaries = profile(appended, schema, top_k=top_k, sketches=sketches)
    rows = previous.row_count + batch.row_count
    features: dict[str, FeatureStatistics] = {}
    summaries: Summaries = {}
    for feature in schema.features:
        a, b = previous.features[feature.name], batch.features[feature.name]
        points = mixture(
            previous_summaries[feature.name].get("points") or [],
            a.count,
            batch_summaries[feature.name].get("points") or [],
            b.count,
        )
        summaries[feature.name] = {
            "sketch": batch_summaries[feature.name]["sketch"],  # the union (see `profile`)
            "points": points,
        }
        features[feature.name] = _combined(a, b, rows, points, batch.features, top_k)
    stats = GroupStatistics(
        group=schema.name,
        version=schema.version,
        delta_version=delta_version,
        row_count=rows,
        last_event=_latest(previous.last_event, batch.last_event),
        last_updated=_latest(previous.last_updated, batch.last_updated),
        computed_at=utc_now().isoformat(),
        features=features,
    )
    return stats, summaries


def _combined(
    a: FeatureStatistics,
    b: FeatureStatistics,
    rows: int,
    points: list[float],
    batch: Mapping[str, FeatureStatistics],
    top_k: int,
) -> FeatureStatistics:
    count = a.count + b.count
    mean, std = _moments(a, b)
    quantiles = (
        {key: points[SUMMARY_POINTS.index(_point(key))] for key in a.quantiles or b.quantiles}
        if points
        else {}
    )
    counts: dict[str, int] = {}
    for value, n in [*a.top_values, *b.top_values]:
        counts[value] = counts.get(value, 0) + int(n)
    top = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))[:top_k]
    return FeatureStatistics(
        name=a.name,
        kind=a.kind,
        count=count,
        null_count=rows - count,
        null_rate=(rows - count) / rows if rows else 0.0,
        distinct_approx=batch[a.name].distinct_approx,  # estimated from the sketches' union
        mean=mean,
        std=std,
        min=_pick(min, a.min, b.min),
        max=_pick(max, a.max, b.max),
        quantiles=quantiles,
        top_values=[(v, n) for v, n in top],
    )


def _point(key: str) -> float:
    return round(float(key[1:]) / 100, 2)


def _moments(a: FeatureStatistics, b: FeatureStatistics) -> tuple[float | None, float | None]:
    """Mean and sample std of both sides' values together (Chan et al.)."""
    if a.mean is None or not a.count:
        return b.mean, b.std
    if b.mean is None or not b.count:
        return a.mean, a.std
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / n
    m2 = (
        (a.std or 0.0) ** 2 * (a.count - 1)
        + (b.std or 0.0) ** 2 * (b.count - 1)
        + delta * delta * a.count * b.count / n
    )
    return mean, math.sqrt(m2 / (n - 1)) if n > 1 else None


def _pick(choose: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def _latest(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=datetime.fromisoformat)


def mixture(a: Sequence[float], n_a: int, b: Sequence[float], n_b: int) -> list[float]:
    """The `SUMMARY_POINTS` quantiles of the union of two samples given by theirs: for each
    share, the smallest value of either summary with at least that share at or below it (so
    discrete features keep their values)."""
    if not n_b or not b:
        return list(a)
    if not n_a or not a:
        return list(b)
    xs = np.unique(np.concatenate([np.asarray(a, float), np.asarray(b, float)]))
    cdf = (n_a * _cdf(a, xs) + n_b * _cdf(b, xs)) / (n_a + n_b)
    at = np.searchsorted(cdf, np.asarray(SUMMARY_POINTS) - 1e-12, side="left")
    out = [float(xs[min(i, len(xs) - 1)]) for i in at]
    out[0], out[-1] = min(a[0], b[0]), max(a[-1], b[-1])
    return out


def _cdf(points: Sequence[float], xs: np.ndarray) -> np.ndarray:
    """The share of a sample at or below each of `xs`, read off its quantile summary: the
    highest share of a summary value equal to x, linear between distinct summary values."""
    values = np.asarray(points, float)
    shares = np.asarray(SUMMARY_POINTS, float)
    last = np.searchsorted(values, xs, side="right") - 1  # the last summary value <= x
    out = np.zeros(len(xs))
    inside = (last >= 0) & (last < len(values) - 1)
    i = last[inside]
    low, high = values[i], values[i + 1]
    step = np.where(high > low, (xs[inside] - low) / np.where(high > low, high - low, 1), 0)
    out[inside] = shares[i] + (shares[i + 1] - shares[i]) * step
    out[last >= len(values) - 1] = 1.0
    return out


def summary_drift(
    reference: GroupStatistics,
    reference_summaries: Summaries,
    current: GroupStatistics,
    current_summaries: Summaries,
    schema: FeatureGroupSchema,
) -> DriftReport:
    """PSI / KS of every numerical and categorical feature between two recorded versions,
    from their statistics and summaries (no Spark job; within about a percent of rank of the
    row-level measure of `drift.compute_drift`)."""
    limits = DriftLimits.of(schema)
    results: dict[str, FeatureDrift] = {}
    for feature in schema.features:
        ref, cur = reference.features.get(feature.name), current.features.get(feature.name)
        if ref is None or cur is None or not ref.count or not cur.count:
            continue
        if is_numeric(feature):
            ref_points = reference_summaries[feature.name].get("points") or []
            cur_points = current_summaries[feature.name].get("points") or []
            if not ref_points or not cur_points:
                continue
            edges = sorted({ref_points[SUMMARY_POINTS.index(q)] for q in PSI_QUANTILES})
            xs = np.unique(np.asarray([*ref_points, *cur_points], float))
            ks = float(np.max(np.abs(_cdf(ref_points, xs) - _cdf(cur_points, xs))))
            ref_bins = _bins(ref_points, edges, ref.count)
            cur_bins = _bins(cur_points, edges, cur.count)
            results[feature.name] = limits.feature(
                feature.name, ref_bins, cur_bins, ks=ks, edges=edges
            )
        elif is_categorical(feature):
            ref_map, cur_map = _shares(ref), _shares(cur)
            values = sorted(set(ref_map) | set(cur_map), key=lambda v: -ref_map.get(v, 0))
            ref_bins = [ref_map.get(v, 0) for v in values]
            cur_bins = [cur_map.get(v, 0) for v in values]
            results[feature.name] = limits.feature(feature.name, ref_bins, cur_bins)
    return limits.report(
        schema,
        results,
        f"previous version (v{reference.delta_version}), from recorded summaries",
        reference.delta_version,
        current.delta_version,
    )


def _bins(points: Sequence[float], edges: Sequence[float], n: int) -> list[int]:
    """Counts in (-inf, e1], ..., (ek, inf) of a sample of `n` values from its summary."""
    cumulative = [*(_cdf(points, np.asarray(edges, float)) * n).round().astype(int).tolist(), n]
    return [cumulative[0], *[b - a for a, b in itertools.pairwise(cumulative)]]


def _shares(feature: FeatureStatistics) -> dict[str, int]:
    """Counts by value (null and the values beyond the kept top ones as buckets of their own)."""
    counts = {str(v): int(n) for v, n in feature.top_values}
    rest = feature.count - sum(counts.values())
    if rest > 0:
        counts[OTHER_VALUES] = rest
    if feature.null_count:
        counts[NULL_VALUE] = feature.null_count
    return counts
