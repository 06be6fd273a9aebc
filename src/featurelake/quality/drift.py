"""Drift between a table version and a reference: PSI and Kolmogorov-Smirnov distance.

Numerical features: PSI over ten bins cut at the reference's deciles, and the KS distance
evaluated at the 2%-quantiles of both sides (`percentile_approx`), so it is within about
0.02 of the exact statistic. Categorical features: PSI over the union of their values (null is a
value). Each side costs a fixed number of Spark jobs, whatever the number of features.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from featurelake.errors import FeatureStoreError
from featurelake.quality.stats import is_categorical, is_numeric, value_counts
from featurelake.registry import Registry, group_key
from featurelake.schema.model import FeatureGroupSchema
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DRIFT = "drift"
PSI_EPSILON = 1e-4
PSI_QUANTILES = tuple(round(0.1 * i, 2) for i in range(1, 10))
KS_QUANTILES = tuple(round(0.02 * i, 2) for i in range(1, 50))
NULL_VALUE = "<null>"
MAX_CATEGORIES = 200
ACCURACY = 10_000


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two histograms over the same bins (counts or shares).

    `sum((a - e) * ln(a / e))` over shares, each clipped below at `epsilon`.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.clip(e / e.sum(), epsilon, None)
    a = np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: PSI (and KS for numerical ones), and whether it passes limits."""

    feature: str
    kind: str
    psi: float | None
    ks: float | None
    drifted: bool
    edges: list[float] = field(default_factory=list)
    reference_bins: list[int] = field(default_factory=list)
    current_bins: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DriftReport:
    """Drift of every feature of a group version between a reference and a current version."""

    group: str
    version: int
    reference: str
    reference_delta_version: int | None
    current_delta_version: int | None
    psi_threshold: float
    ks_threshold: float
    features: dict[str, FeatureDrift]
    computed_at: str

    @property
    def drifted(self) -> list[str]:
        return [name for name, d in self.features.items() if d.drifted]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = {k: asdict(v) for k, v in self.features.items()}
        out["drifted"] = self.drifted
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["features"] = {k: FeatureDrift(**v) for k, v in data["features"].items()}
        return cls(**values)


@dataclass(frozen=True)
class DriftLimits:
    """The PSI and KS limits of a drift measure, and the results it builds with them."""

    psi: float
    ks: float

    @classmethod
    def of(
        cls, schema: FeatureGroupSchema, psi: float | None = None, ks: float | None = None
    ) -> DriftLimits:
        """The given limits, else the group's `checks` thresholds, else PSI 0.2 and KS 0.1."""
        checks = schema.checks
        return cls(
            psi or (checks.psi_threshold if checks else 0.2),
            ks or (checks.ks_threshold if checks else 0.1),
        )

    def feature(
        self,
        name: str,
        reference_bins: list[int],
        current_bins: list[int],
        *,
        ks: float | None = None,
        edges: list[float] | None = None,
        shown: int | None = None,
    ) -> FeatureDrift:
        """A feature's drift: PSI over its bins (the first `shown` kept); a numerical feature,
        binned between `edges`, also gives its KS."""
        value = psi(reference_bins, current_bins)
        return FeatureDrift(
            feature=name,
            kind="categorical" if ks is None else "numerical",
            psi=value,
            ks=ks,
            drifted=value > self.psi or (ks is not None and ks > self.ks),
            edges=[] if edges is None else edges,
            reference_bins=reference_bins[:shown],
            current_bins=current_bins[:shown],
        )

    def report(
        self,
        schema: FeatureGroupSchema,
        features: dict[str, FeatureDrift],
        reference: str,
        reference_delta_version: int | None,
        current_delta_version: int | None,
    ) -> DriftReport:
        """The report of a group version's measured `features`, computed now."""
        return DriftReport(
            group=schema.name,
            version=schema.version,
            reference=reference,
            reference_delta_version=reference_delta_version,
            current_delta_version=current_delta_version,
            psi_threshold=self.psi,
            ks_threshold=self.ks,
            features=features,
            computed_at=utc_now().isoformat(),
        )


def _quantiles(
    df: DataFrame, names: Sequence[str], probs: Sequence[float]
) -> dict[str, list[float]]:
    from pyspark.sql import functions as F

    if not names:
        return {}
    array = F.array(*[F.lit(p) for p in probs])
    row = df.agg(
        *[
            F.percentile_approx(F.col(n).cast("double"), array, ACCURACY).alias(f"q{i}")
            for i, n in enumerate(names)
        ]
    ).collect()[0]
    return {n: [float(v) for v in (row[f"q{i}"] or [])] for i, n in enumerate(names)}


def _cumulative(
    df: DataFrame, points: Mapping[str, Sequence[float]]
) -> dict[str, tuple[int, list[int]]]:
    """Per feature: non-null count, and how many values are <= each point (one job)."""
    from pyspark.sql import functions as F

    aggs = []
    for i, (name, pts) in enumerate(points.items()):
        x = F.col(name).cast("double")
        aggs.append(F.count(x).alias(f"n{i}"))
        aggs += [
            F.sum((x <= F.lit(float(p))).cast("long")).alias(f"c{i}_{j}") for j, p in enumerate(pts)
        ]
    if not aggs:
        return {}
    row = df.agg(*aggs).collect()[0]
    return {
        name: (int(row[f"n{i}"]), [int(row[f"c{i}_{j}"] or 0) for j in range(len(pts))])
        for i, (name, pts) in enumerate(points.items())
    }


def compute_drift(
    reference: DataFrame,
    current: DataFrame,
    schema: FeatureGroupSchema,
    *,
    reference_label: str = "reference",
    reference_delta_version: int | None = None,
    current_delta_version: int | None = None,
    psi_threshold: float | None = None,
    ks_threshold: float | None = None,
) -> DriftReport:
    """PSI / KS of every numerical and categorical feature of `current` against `reference`."""
    limits = DriftLimits.of(schema, psi_threshold, ks_threshold)
    numeric = [f.name for f in schema.features if is_numeric(f) and f.name in current.columns]
    categorical = [
        f.name
        for f in schema.features
        if is_categorical(f) and not is_numeric(f) and f.name in current.columns
    ]
    results: dict[str, FeatureDrift] = {}
    ref_q = _quantiles(reference, numeric, KS_QUANTILES)
    cur_q = _quantiles(current, numeric, KS_QUANTILES)
    points: dict[str, list[float]] = {}
    edges: dict[str, list[float]] = {}
    for name in numeric:
        if not ref_q.get(name):
            continue
        deciles = [ref_q[name][KS_QUANTILES.index(q)] for q in PSI_QUANTILES]
        edges[name] = sorted(set(deciles))
        points[name] = sorted(set(ref_q[name]) | set(cur_q.get(name, [])) | set(edges[name]))
    ref_c = _cumulative(reference, points)
    cur_c = _cumulative(current, points)
    for name, pts in points.items():
        ref_n, ref_le = ref_c[name]
        cur_n, cur_le = cur_c[name]
        if not ref_n or not cur_n:
            continue
        ks = max(abs(r / ref_n - c / cur_n) for r, c in zip(ref_le, cur_le, strict=True))
        ref_bins = _bins(edges[name], pts, ref_n, ref_le)
        cur_bins = _bins(edges[name], pts, cur_n, cur_le)
        results[name] = limits.feature(name, ref_bins, cur_bins, ks=ks, edges=edges[name])
    ref_v = value_counts(reference, categorical)
    cur_v = value_counts(current, categorical)
    for name in categorical:
        ref_map = {NULL_VALUE if v is None else v: n for v, n in ref_v.get(name, [])}
        cur_map = {NULL_VALUE if v is None else v: n for v, n in cur_v.get(name, [])}
        if not ref_map or not cur_map:
            continue
        values = sorted(set(ref_map) | set(cur_map), key=lambda v: -ref_map.get(v, 0))
        ref_bins = [ref_map.get(v, 0) for v in values]
        cur_bins = [cur_map.get(v, 0) for v in values]
        results[name] = limits.feature(name, ref_bins, cur_bins, shown=MAX_CATEGORIES)
    return limits.report(
        schema, results, reference_label, reference_delta_version, current_delta_version
    )


def _bins(edges: Sequence[float], points: Sequence[float], n: int, le: Sequence[int]) -> list[int]:
    """Counts in (-inf, e1], (e1, e2], ..., (ek, inf) from cumulative counts at `points`."""
    at = dict(zip(points, le, strict=True))
    cumulative = [at[e] for e in edges]
    counts = [cumulative[0]]
    counts += [b - a for a, b in itertools.pairwise(cumulative)]
    counts.append(n - cumulative[-1])
    return counts


def reference_version(reference: Any, group: str, version: int) -> int:
    """The Delta version a reference names: an int, or a training-set manifest (object/dict)."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        return reference
    data = reference.to_dict() if hasattr(reference, "to_dict") else reference
    if isinstance(data, Mapping):
        for table in data.get("tables", ()):
            if table.get("group") == group and int(table.get("group_version", version)) == version:
                return int(table["delta_version"])
    raise FeatureStoreError(
        f"The drift reference {reference!r} does not name a Delta version of group "
        f"'{group}' v{version}.",
        fix="pass a Delta version number, or the manifest of a training set that read this group.",
        group=group,
    )


def drift(
    registry: Registry,
    group: str | FeatureGroupSchema,
    *,
    reference: Any = None,
    current_version: int | None = None,
    spark: SparkSession | None = None,
    record: bool = True,
) -> DriftReport:
    """Drift of a group's Gold table (now, or at `current_version`) against a reference.

    `reference`: None (the Delta version before the current one), a Delta version, or a
    training-set manifest (`TrainingSetManifest` or its dict), whose version of this group is
    used. The report is stored as a `drift` event of `group@version` unless `record=False`.
    """
    from featurelake.quality.tables import latest_version, read_version, resolve

    schema = resolve(registry, group)
    session = spark or registry.spark
    location = registry.gold_location(schema.name, schema.version)
    current = current_version if current_version is not None else latest_version(session, location)
    if reference is None:
        ref_version, label = max(current - 1, 0), f"previous version (v{max(current - 1, 0)})"
    else:
        ref_version = reference_version(reference, schema.name, schema.version)
        label = (
            f"Delta version {ref_version}"
            if isinstance(reference, int)
            else f"training set '{_name(reference)}' (Delta version {ref_version})"
        )
    report = compute_drift(
        read_version(session, location, ref_version),
        read_version(session, location, current),
        schema,
        reference_label=label,
        reference_delta_version=ref_version,
        current_delta_version=current,
    )
    if record:
        registry.append_event(DRIFT, group_key(schema.name, schema.version), report.to_dict())
    return report


def drift_history(registry: Registry, group: str, version: int) -> list[DriftReport]:
    """Stored drift reports of a group version, oldest first."""
    return [DriftReport.from_dict(e) for e in registry.events(DRIFT, group_key(group, version))]


def _name(reference: Any) -> str:
    data = reference.to_dict() if hasattr(reference, "to_dict") else reference
    name = data.get("name") if isinstance(data, Mapping) else None
    return str(name or "unnamed")


def finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
