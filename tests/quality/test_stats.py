from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.quality import (
    GroupStatistics,
    attach_quality,
    compute_statistics,
    drift_history,
    statistics,
    statistics_history,
)
from featurelake.quality.stats import QUANTILE_ACCURACY, QUANTILES, STATS, SUMMARIES
from featurelake.registry import group_key
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 1, 1)
SCHEMA = FeatureGroupSchema(
    name="profiles",
    entity_keys=["id"],
    features=[
        FeatureSchema("amount", "double"),
        FeatureSchema("visits", "int"),
        FeatureSchema("country", "string"),
        FeatureSchema("active", "boolean"),
    ],
)


def make_frame(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    visits = pd.array(rng.poisson(4, n), dtype="Int32")
    visits[rng.random(n) < 0.05] = pd.NA
    country = rng.choice(["FR", "DE", "US", "JP"], size=n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    country[rng.random(n) < 0.02] = None
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "event_timestamp": [T0 + timedelta(minutes=int(i)) for i in range(n)],
            "amount": amount,
            "visits": visits,
            "country": country,
            "active": rng.random(n) < 0.3,
        }
    )


def test_statistics_equal_pandas_reference(spark: SparkSession) -> None:
    data = make_frame(5_000)
    df = spark.createDataFrame(
        data.astype({"visits": "float64"}).replace({np.nan: None}),
        "id bigint, event_timestamp timestamp, amount double, visits double, country string, "
        "active boolean",
    ).withColumn("visits", F.col("visits").cast("int"))
    stats = compute_statistics(df, SCHEMA, delta_version=3)
    assert stats.row_count == len(data)
    assert stats.last_event == data["event_timestamp"].max().isoformat()
    for name in ("amount", "visits"):
        column = data[name].astype("float64")
        got = stats.features[name]
        assert got.kind == "numerical"
        assert got.count == column.notna().sum()
        assert got.null_count == column.isna().sum()
        assert got.null_rate == pytest.approx(column.isna().mean())
        assert got.mean == pytest.approx(column.mean(), rel=1e-12)
        assert got.std == pytest.approx(column.std(ddof=1), rel=1e-9)
        assert got.min == column.min()
        assert got.max == column.max()
        # percentile_approx: the rank of the answer is within n / accuracy of the exact rank.
        values = np.sort(column.dropna().to_numpy())
        slack = int(np.ceil(len(values) / QUANTILE_ACCURACY)) + 1
        for q in QUANTILES:
            answer = got.quantiles[f"p{round(q * 100):g}"]
            low = np.searchsorted(values, answer, side="left")
            high = np.searchsorted(values, answer, side="right")
            assert low - slack <= q * len(values) <= high + slack, (name, q)
        assert abs(got.distinct_approx - column.nunique()) <= 0.1 * column.nunique()
    country = stats.features["country"]
    assert country.kind == "categorical"
    assert country.null_count == data["country"].isna().sum()
    expected = data["country"].value_counts()
    assert country.top_values == [(k, int(v)) for k, v in expected.items()]
    active = stats.features["active"]
    assert active.kind == "categorical"
    assert dict(active.top_values) == {
        str(k).lower(): int(v) for k, v in data["active"].value_counts().items()
    }
    again = GroupStatistics.from_dict(stats.to_dict())
    assert again == stats


def test_statistics_are_stored_per_delta_version(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    first = store.write_features("profiles", make_frame(200, seed=1))
    second = store.write_features(
        "profiles", make_frame(100, seed=2).assign(id=lambda d: d.id + 1000)
    )
    statistics(store.registry, "profiles", delta_version=first.delta_version)
    latest = statistics(store.registry, "profiles")
    assert latest.delta_version == second.delta_version
    assert latest.row_count == 300
    history = statistics_history(store.registry, "profiles", 1)
    assert list(history) == [first.delta_version, second.delta_version]
    assert history[first.delta_version].row_count == 200
    assert history[second.delta_version].last_updated is not None


def test_appends_are_folded_into_the_recorded_statistics(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    """A write that appends records the new version's statistics from the previous version's
    and a profile of the appended rows only; they agree with a full recomputation."""
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    attach_quality(store)
    first = store.write_features("profiles", make_frame(3_000, seed=1))
    second = store.write_features(
        "profiles", make_frame(1_000, seed=2).assign(id=lambda d: d.id + 10_000)
    )
    events = store.registry.events(SUMMARIES, group_key("profiles", 1))
    assert [e["delta_version"] for e in events] == [first.delta_version, second.delta_version]
    assert all(set(e["summaries"]) == {f.name for f in SCHEMA.features} for e in events)
    assert all("summaries" not in e for e in store.registry.events(STATS, group_key("profiles", 1)))
    folded = statistics_history(store.registry, "profiles", 1)[second.delta_version]
    full = statistics(store.registry, "profiles", delta_version=second.delta_version, record=False)
    assert folded.row_count == full.row_count == 4_000
    assert folded.last_event == full.last_event and folded.last_updated == full.last_updated
    values = pd.concat([make_frame(3_000, seed=1), make_frame(1_000, seed=2)])
    for name, got in folded.features.items():
        expected = full.features[name]
        assert (got.kind, got.count, got.null_count) == (
            expected.kind,
            expected.count,
            expected.null_count,
        )
        assert got.null_rate == pytest.approx(expected.null_rate)
        assert got.min == expected.min and got.max == expected.max
        assert got.top_values == expected.top_values
        assert got.distinct_approx == pytest.approx(expected.distinct_approx, rel=0.05)
        if got.kind == "numerical":
            assert got.mean == pytest.approx(expected.mean, rel=1e-9)
            assert got.std == pytest.approx(expected.std, rel=1e-9)
            column = np.sort(values[name].astype("float64").dropna().to_numpy())
            for key, answer in got.quantiles.items():
                low = np.searchsorted(column, answer, side="left") / len(column)
                high = np.searchsorted(column, answer, side="right") / len(column)
                assert low - 0.03 <= float(key[1:]) / 100 <= high + 0.03, (name, key)
    (report,) = drift_history(store.registry, "profiles", 1)
    assert report.reference_delta_version == first.delta_version
    assert report.current_delta_version == second.delta_version
    assert report.drifted == []  # the same distributions


def test_appends_without_recorded_summaries_read_the_whole_version(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    store.write_features("profiles", make_frame(200, seed=1))  # no quality attached yet
    attach_quality(store, drift_on_write=False)
    second = store.write_features(
        "profiles", make_frame(100, seed=2).assign(id=lambda d: d.id + 1000)
    )
    history = statistics_history(store.registry, "profiles", 1)
    assert list(history) == [second.delta_version]
    assert history[second.delta_version].row_count == 300
