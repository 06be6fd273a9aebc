"""Seed 004 (a feature platform with a registry, offline and online stores, materialization and
serving): its examples on featurelake, over real Spark, Delta and Redis, and its
materialize call over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import AmbiguousFeatureError, SchemaValidationError
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.server import ServerSettings, create_app
from featurelake.server.auth import ApiKeyStore
from featurelake.serving import FeatureStore

pytestmark = [pytest.mark.spark, pytest.mark.redis]

T0 = datetime(2024, 1, 1)
PROFILE = FeatureGroupSchema(
    "user_profile",
    ["user_id"],
    [
        FeatureSchema("user_age", "int", description="User age in years", min_value=0),
        FeatureSchema("account_balance", "double", default_value=0.0),
        FeatureSchema("user_segment", "string", allowed_values=["premium", "standard", "basic"]),
    ],
    timestamp_key="timestamp",
    entity_key_types={"user_id": "string"},
)
ACTIVITY = FeatureGroupSchema(
    "user_activity",
    ["user_id"],
    [FeatureSchema("purchase_count", "bigint", default_value=0)],
    timestamp_key="timestamp",
    entity_key_types={"user_id": "string"},
)


@pytest.fixture
def store(spark: SparkSession, store_config: FeatureStoreConfig, redis_server: Any) -> FeatureStore:
    config = store_config.replace(
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=redis_server.url,
        sync_to_online=True,
    )
    made = FeatureStore(config, spark)
    made.register_features(PROFILE)
    made.register_features(ACTIVITY)
    made.write_features(
        "user_profile",
        pd.DataFrame(
            {
                "user_id": ["user_123", "user_456", "user_123"],
                "timestamp": [T0, T0, T0 + timedelta(days=10)],
                "user_age": pd.array([28, 35, 29], dtype="int32"),
                "account_balance": [10.0, 20.0, 30.0],
                "user_segment": ["basic", "premium", "standard"],
            }
        ),
    )
    made.write_features(
        "user_activity",
        pd.DataFrame(
            {
                "user_id": ["user_123", "user_123"],
                "timestamp": [T0 + timedelta(days=1), T0 + timedelta(days=12)],
                "purchase_count": [156, 170],
            }
        ),
    )
    return made


def test_historical_features_with_the_seed_keywords(store: FeatureStore) -> None:
    train_df = pd.DataFrame(
        {
            "user_id": ["user_123", "user_456", "user_123"],
            "timestamp": [
                T0 + timedelta(hours=10),
                T0 + timedelta(hours=11),
                T0 + timedelta(days=11),
            ],
            "label": [0, 1, 1],
        }
    )
    features_df = store.get_historical_features(
        entities=train_df, features=["user_age", "purchase_count"], to_pandas=True
    )
    rows = features_df.sort_values(["timestamp", "user_id"]).to_dict("records")
    assert [(r["user_id"], r["user_age"], r["label"]) for r in rows] == [
        ("user_123", 28, 0),
        ("user_456", 35, 1),
        ("user_123", 29, 1),
    ]
    counts = [r["purchase_count"] for r in rows]
    assert pd.isna(counts[0]) and pd.isna(counts[1]) and counts[2] == 156  # point in time
    # the same request on Spark
    on_spark = store.get_historical_features(
        entities=store.spark.createDataFrame(train_df), features=["user_profile.user_age"]
    )
    assert on_spark.count() == 3
    with pytest.raises(SchemaValidationError, match="allowed"):
        store.write_features(
            "user_profile",
            pd.DataFrame(
                {
                    "user_id": ["u9"],
                    "timestamp": [T0],
                    "user_age": pd.array([40], dtype="int32"),
                    "account_balance": [1.0],
                    "user_segment": ["gold"],  # not an allowed value
                }
            ),
        )
    store.register_features(
        FeatureGroupSchema("orders", ["user_id"], [FeatureSchema("purchase_count", "bigint")])
    )
    with pytest.raises(AmbiguousFeatureError, match=r"user_activity\.purchase_count"):
        store.get_historical_features(entities=train_df, features=["purchase_count"])


def test_online_serving_fills_default_values(store: FeatureStore) -> None:
    vectors = store.get_online_features(
        ["user_profile.user_age", "account_balance", "purchase_count"],
        ["user_123", "user_456", "user_789"],
    )
    assert isinstance(vectors, list)
    known, no_activity, unknown = (v.to_dict() for v in vectors)
    assert known == {"user_age": 29, "account_balance": 30.0, "purchase_count": 170}
    assert no_activity == {"user_age": 35, "account_balance": 20.0, "purchase_count": 0}
    assert unknown == {"user_age": None, "account_balance": 0.0, "purchase_count": 0}


def test_materialize_over_http(
    store: FeatureStore, tmp_path: Path, http_app: Callable[[Any], Any]
) -> None:
    silver = tmp_path / "silver_users"
    store.spark.createDataFrame(
        pd.DataFrame(
            {
                "user_id": ["user_1", "user_2"],
                "timestamp": [T0, T0],
                "birth_year": [1990, 2000],
            }
        )
    ).write.format("delta").save(str(silver))
    ages = FeatureGroupSchema(
        "user_ages",
        ["user_id"],
        [FeatureSchema("user_age", "int")],
        timestamp_key="timestamp",
        entity_key_types={"user_id": "string"},
    )
    store.define_virtual_features(
        ages,
        f"SELECT user_id, timestamp, CAST(2024 - birth_year AS INT) AS user_age "
        f"FROM delta.`{silver}`",
    )
    app = create_app(store, ServerSettings(key_cache_seconds=0, audit_flush_seconds=0.2))
    keys = ApiKeyStore(Registry(store.config))
    writer = keys.create("pipeline", "writer").token
    reader = keys.create("model", "reader").token
    client = http_app(app)
    refused = client.post(
        "/v1/features/materialize", json={"group": "user_ages"}, headers={"X-API-Key": reader}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "role_forbidden"
    ran = client.post(
        "/v1/features/materialize", json={"group": "user_ages"}, headers={"X-API-Key": writer}
    )
    assert ran.status_code == 200, ran.text
    body = ran.json()
    assert (body["group"], body["kind"], body["rows_written"]) == ("user_ages", "virtual", 2)
    gold = store.read_table("user_ages").toPandas().set_index("user_id")
    assert gold.loc["user_1", "user_age"] == 34 and gold.loc["user_2", "user_age"] == 24
    # the seed's date range: only the rows of January are recomputed from the query's rows now
    later = T0 + timedelta(days=40)
    store.spark.createDataFrame(
        pd.DataFrame(
            {
                "user_id": ["user_1", "user_3", "user_4"],
                "timestamp": [T0 + timedelta(days=5), T0 + timedelta(days=9), later],
                "birth_year": [1980, 1970, 1960],
            }
        )
    ).write.format("delta").mode("append").save(str(silver))
    dated = client.post(
        "/v1/features/materialize",
        json={
            "group": "user_ages",
            "start_date": "2024-01-02T00:00:00",
            "end_date": "2024-01-31T23:59:59",
        },
        headers={"X-API-Key": writer},
    )
    assert dated.status_code == 200, dated.text
    assert (dated.json()["mode"], dated.json()["rows_written"]) == ("backfill", 2)
    rows = store.read_table("user_ages").toPandas()
    assert sorted(zip(rows["user_id"], rows["timestamp"], rows["user_age"], strict=True)) == [
        ("user_1", pd.Timestamp(T0), 34),  # before the range: kept
        ("user_1", pd.Timestamp(T0 + timedelta(days=5)), 44),
        ("user_2", pd.Timestamp(T0), 24),
        ("user_3", pd.Timestamp(T0 + timedelta(days=9)), 54),
    ]  # user_4's event after the range is not written
    for half in ({"start_date": "2024-01-02T00:00:00"}, {"end": "2024-01-02T00:00:00"}):
        one_bound = client.post(
            "/v1/features/materialize",
            json={"group": "user_ages", **half},
            headers={"X-API-Key": writer},
        )
        assert one_bound.status_code == 422 and "both start and end" in one_bound.text
    backwards = client.post(
        "/v1/features/materialize",
        json={"group": "user_ages", "start": "2024-02-01T00:00:00", "end": "2024-01-01T00:00:00"},
        headers={"X-API-Key": writer},
    )
    assert backwards.status_code == 422 and "before end" in backwards.text
    # a group that is neither virtual nor has a source: a typed error with the fix
    plain = client.post(
        "/v1/features/materialize", json={"group": "user_profile"}, headers={"X-API-Key": writer}
    )
    assert plain.status_code == 422 and "define" in plain.json()["error"]["fix"]
