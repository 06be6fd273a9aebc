from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.quality import compute_drift, drift, drift_history, psi
from featurelake.quality.drift import PSI_EPSILON
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 1, 1)
SCHEMA = FeatureGroupSchema(
    name="sessions",
    entity_keys=["id"],
    features=[FeatureSchema("duration", "double"), FeatureSchema("device", "string")],
)


def reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    p = np.maximum(expected / expected.sum(), PSI_EPSILON)
    q = np.maximum(actual / actual.sum(), PSI_EPSILON)
    return float(((q - p) * np.log(q / p)).sum())


def exact_ks(a: np.ndarray, b: np.ndarray) -> float:
    points = np.union1d(a, b)
    fa = np.searchsorted(np.sort(a), points, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def sample(n: int, shift: float, devices: list[float], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64") + seed * 1_000_000,
            "event_timestamp": [T0 + timedelta(seconds=i) for i in range(n)],
            "duration": rng.normal(shift, 1.0, n),
            "device": rng.choice(["ios", "android", "web"], size=n, p=devices),
        }
    )


def test_psi_formula() -> None:
    expected = np.array([10.0, 20.0, 30.0, 40.0])
    actual = np.array([40.0, 30.0, 20.0, 0.0])
    assert psi(expected, actual) == pytest.approx(reference_psi(expected, actual))
    assert psi(expected, expected * 3) == pytest.approx(0.0)


def test_drift_matches_numpy_reference(spark: SparkSession) -> None:
    ref = sample(4000, 0.0, [0.5, 0.3, 0.2], seed=1)
    same = sample(4000, 0.0, [0.5, 0.3, 0.2], seed=2)
    moved = sample(4000, 0.5, [0.2, 0.3, 0.5], seed=3)
    ref_df = spark.createDataFrame(ref)
    for current, drifted in ((same, False), (moved, True)):
        report = compute_drift(ref_df, spark.createDataFrame(current), SCHEMA)
        num = report.features["duration"]
        edges = np.array(num.edges)
        assert len(edges) == 9
        ref_bins = np.bincount(np.searchsorted(edges, ref["duration"], side="left"), minlength=10)
        cur_bins = np.bincount(
            np.searchsorted(edges, current["duration"], side="left"), minlength=10
        )
        assert num.reference_bins == ref_bins.tolist()
        assert num.current_bins == cur_bins.tolist()
        assert num.psi == pytest.approx(reference_psi(ref_bins, cur_bins), rel=1e-9)
        # KS is evaluated at 2%-quantiles of both sides: within 0.02 of the exact statistic.
        assert num.ks == pytest.approx(exact_ks(ref["duration"], current["duration"]), abs=0.02)
        cat = report.features["device"]
        counts_ref = ref["device"].value_counts()
        counts_cur = current["device"].value_counts()
        labels = list(counts_ref.index)
        assert cat.psi == pytest.approx(
            reference_psi(counts_ref[labels].to_numpy(), counts_cur[labels].to_numpy())
        )
        assert num.drifted is drifted and cat.drifted is drifted
        assert sorted(report.drifted) == (["device", "duration"] if drifted else [])


def test_drift_against_previous_version_and_training_manifest(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    first = store.write_features("sessions", sample(500, 0.0, [0.5, 0.3, 0.2], seed=1))
    second = store.write_features(
        "sessions", sample(500, 3.0, [0.5, 0.3, 0.2], seed=2), mode="overwrite"
    )
    previous = drift(store.registry, "sessions")
    assert previous.reference_delta_version == first.delta_version
    assert previous.current_delta_version == second.delta_version
    assert previous.drifted == ["duration"]
    manifest = {
        "name": "churn_2024",
        "tables": [
            {"group": "sessions", "group_version": 1, "delta_version": second.delta_version}
        ],
    }
    pinned = drift(store.registry, "sessions", reference=manifest)
    assert pinned.reference_delta_version == second.delta_version
    assert pinned.drifted == []
    assert "churn_2024" in pinned.reference
    assert [r.reference_delta_version for r in drift_history(store.registry, "sessions", 1)] == [
        first.delta_version,
        second.delta_version,
    ]
