from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.engines.spark.training import TrainingSetManifest
from featurelake.errors import FeatureGroupNotFoundError, FeatureNotFoundError, PointInTimeError
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 1, 1)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


PROFILE = FeatureGroupSchema(
    name="profile",
    entity_keys=["customer_id"],
    features=[FeatureSchema("age", "int"), FeatureSchema("score", "double")],
)
STORE_STATS = FeatureGroupSchema(
    name="store_stats",
    entity_keys=["store_id"],
    features=[FeatureSchema("visits", "bigint"), FeatureSchema("score", "double")],
    ttl="2d",
)


@pytest.fixture(scope="module")
def store(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, store_paths: Any
) -> MaterializedFeatureStore:
    config = FeatureStoreConfig(
        storage_path=store_paths.path(tmp_path_factory.mktemp("training")),
        storage=store_paths.storage,
    )
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    store.register_features(PROFILE)
    store.register_features(STORE_STATS)
    store.write_features(
        "profile",
        spark.createDataFrame(
            [(1, day(0), 30, 0.1), (1, day(5), 31, None), (2, day(1), 40, 0.4)],
            "customer_id bigint, event_timestamp timestamp, age int, score double",
        ),
    )
    store.write_features(
        "store_stats",
        spark.createDataFrame(
            [(10, day(0), 5, 1.0), (10, day(4), 7, 2.0)],
            "store_id bigint, event_timestamp timestamp, visits bigint, score double",
        ),
    )
    return store


ENTITIES = pd.DataFrame(
    {
        "customer_id": [1, 1, 2, 3, 1],
        "store_id": pd.array([10, 10, 10, 10, None], dtype="Int64"),
        "event_timestamp": [day(1), day(6), day(0.5), day(3), day(2)],
        "label": [0, 1, 0, 1, 1],
    }
)


def as_tuples(frame: object) -> list[tuple[object, ...]]:
    pdf = frame.toPandas()  # type: ignore[attr-defined]
    pdf = pdf.sort_values(["event_timestamp", "customer_id"]).reset_index(drop=True)
    return [tuple(None if pd.isna(v) else v for v in row) for row in pdf.itertuples(index=False)]


def test_several_groups_with_clashing_names(store: MaterializedFeatureStore) -> None:
    result = store.get_historical_features(
        ENTITIES, ["profile.age", "profile.score", "store_stats.visits", "store_stats.score"]
    )
    assert result.columns == [
        "customer_id",
        "store_id",
        "event_timestamp",
        "label",
        "age",
        "profile__score",
        "visits",
        "store_stats__score",
    ]
    got = as_tuples(result.select(*result.columns))
    assert got == [
        (2, 10, day(0.5), 0, None, None, 5, 1.0),
        (1, 10, day(1), 0, 30, 0.1, 5, 1.0),
        (1, None, day(2), 1, 30, 0.1, None, None),
        (3, 10, day(3), 1, None, None, None, None),  # store ttl 2d: day(0) is too old
        (1, 10, day(6), 1, 31, None, 7, 2.0),  # the latest event's null stays null
    ]


def test_ttl_argument_and_fill(store: MaterializedFeatureStore) -> None:
    result = store.get_historical_features(ENTITIES, "profile.*", ttl="3d", fill="last_non_null")
    rows = {(r.customer_id, r.event_timestamp): (r.age, r.score) for r in result.collect()}
    assert rows[(1, day(6))] == (31, None)  # 0.1 is from day 0: outside the 3-day ttl
    assert rows[(1, day(2))] == (30, 0.1)
    assert rows[(2, day(0.5))] == (None, None)


def test_manifest_rebuilds_exactly(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    built = store.get_training_set(ENTITIES, ["profile.age", "store_stats.visits"], name="churn_v1")
    before = as_tuples(built.df)
    assert built.manifest.delta_version("profile") == store.history("profile")[0].version
    store.write_features(
        "profile",
        spark.createDataFrame(
            [(1, day(0.5), 99, 9.9)],
            "customer_id bigint, event_timestamp timestamp, age int, score double",
        ),
    )
    assert (
        as_tuples(store.get_historical_features(ENTITIES, ["profile.age", "store_stats.visits"]))
        != before
    )
    assert as_tuples(store.rebuild(built.manifest, ENTITIES).df) == before
    assert as_tuples(store.rebuild("churn_v1").df) == before
    again = TrainingSetManifest.from_json(built.manifest.to_json())
    assert again == built.manifest


def test_bad_requests_fail_before_any_job(
    spark: SparkSession, store: MaterializedFeatureStore, spark_jobs: Any
) -> None:
    jobs_before = spark_jobs.ids()
    entities = spark.createDataFrame(ENTITIES.drop(columns=["store_id"]))
    with pytest.raises(PointInTimeError, match=r"store_id"):
        store.get_historical_features(entities, ["store_stats.visits"])
    with pytest.raises(FeatureNotFoundError, match="has no feature 'height'"):
        store.get_historical_features(entities, ["profile.height"])
    with pytest.raises(FeatureGroupNotFoundError):
        store.get_historical_features(entities, ["nope.x"])
    with pytest.raises(PointInTimeError, match="fill"):
        store.get_historical_features(entities, ["profile.age"], fill="forward")
    with pytest.raises(PointInTimeError, match="no column 'ts'"):
        store.get_historical_features(entities, ["profile.age"], timestamp_column="ts")
    assert spark_jobs.ids() == jobs_before
    with pytest.raises(PointInTimeError, match="No training set named"):
        store.rebuild("never_built")
