"""The FeatureStore facade and feature services, over real Spark, Delta and Redis."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import (
    ConfigurationError,
    FeatureNotFoundError,
    OnlineStoreUnavailableError,
)
from featurelake.online import FeatureVector, RedisOnlineStore
from featurelake.schema import FeatureGroupSchema
from featurelake.serving import FeatureStore, FeatureTransform, ServiceDefinition

pytestmark = [pytest.mark.spark, pytest.mark.redis]

T0 = datetime(2024, 6, 1)
PROFILE = FeatureGroupSchema(
    "profile",
    ["user_id"],
    [{"name": "age", "type": "int"}, {"name": "country", "type": "string"}],
)
ACTIVITY = FeatureGroupSchema(
    "activity",
    ["user_id"],
    [{"name": "clicks", "type": "bigint"}, {"name": "spend", "type": "double"}],
)


def online_config(base: FeatureStoreConfig, url: str, **changes: Any) -> FeatureStoreConfig:
    return base.replace(
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=url,
        online_timeout_ms=300,
        **changes,
    )


def profiles(spark: SparkSession, rows: list[tuple[Any, ...]]) -> Any:
    return spark.createDataFrame(
        rows, "user_id bigint, event_timestamp timestamp, age int, country string"
    )


def test_writes_sync_online_and_services_serve_them(
    spark: SparkSession, store_config: FeatureStoreConfig, redis_server: Any
) -> None:
    config = online_config(store_config, redis_server.url, sync_to_online=True)
    store = FeatureStore(config, spark)
    assert store.register_features(PROFILE).action == "created"
    store.register_features(ACTIVITY)
    store.write_features("profile", profiles(spark, [(1, T0, 30, "DE"), (2, T0, 41, "FR")]))
    assert isinstance(store.online, RedisOnlineStore)

    vectors = store.get_online_features(["profile.age", "profile.country"], [1, 2, 3])
    assert isinstance(vectors, list) and all(isinstance(v, FeatureVector) for v in vectors)
    assert [v.to_list() for v in vectors] == [[30, "DE"], [41, "FR"], [None, None]]
    assert vectors[0].event_time("age") == T0 and vectors[0].source == "online"
    frame = store.get_online_features("profile.*", [2], as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("records") == [{"user_id": 2, "age": 41, "country": "FR"}]

    # A second write is synced incrementally by the write listener.
    later = T0 + timedelta(days=1)
    store.write_features("profile", profiles(spark, [(1, later, 31, "DE")]))
    (one,) = store.get_online_features("profile.age", [1])
    assert one.get("age") == 31 and one.event_time("age") == later

    # Services: transforms and defaults, stored in the registry.
    service = store.services.register(
        "churn",
        ["profile.age", "profile.country", "activity.clicks"],
        transforms={
            "age": FeatureTransform.scale(mean=30, std=10),
            "profile.country": FeatureTransform.one_hot(["DE", "FR"]),
        },
        defaults={"clicks": 0},
        description="inputs of the churn model",
    )
    assert isinstance(service, ServiceDefinition)
    ingest = store.services.ingest_batch(
        "activity",
        [
            {"user_id": 1, "event_timestamp": later, "clicks": 7, "spend": 1.5},
            {"clicks": 3},
            {"user_id": 2, "clicks": 4, "country": "?"},
        ],
    )
    assert (ingest.received, ingest.written, ingest.skipped) == (3, 2, 1)
    assert "entity key" in ingest.skipped_reasons[0] and ingest.ignored_columns == ["country"]

    other_process = FeatureStore(config, spark)  # a new registry reads the same store
    assert [s.name for s in other_process.services.list_services()] == ["churn"]
    first, second, unknown = other_process.services.get_features("churn", [1, 2, 99])
    assert first.to_dict() == {"age": pytest.approx(0.1), "country": [1, 0], "clicks": 7}
    assert second.to_dict() == {"age": pytest.approx(1.1), "country": [0, 1], "clicks": 4}
    assert unknown.to_dict() == {"age": None, "country": [0, 0], "clicks": 0}
    table = other_process.services.get_features("churn", [1], as_frame=True)
    assert isinstance(table, pd.DataFrame) and table.columns[0] == "user_id"
    with pytest.raises(FeatureNotFoundError, match="churn"):
        store.services.get("nope")
    with pytest.raises(FeatureNotFoundError, match="does not serve"):
        store.services.register(
            "bad", ["profile.age"], transforms={"clicks": FeatureTransform.scale(2)}
        )
    store.services.delete("churn")
    assert store.services.list_services() == []
    store.close()


def test_ingested_records_can_also_go_offline(
    spark: SparkSession, store_config: FeatureStoreConfig, redis_server: Any
) -> None:
    store = FeatureStore(online_config(store_config, redis_server.url), spark)
    store.register_features(ACTIVITY)
    result = store.services.ingest(
        "activity",
        {"user_id": 5, "event_timestamp": T0, "clicks": 2, "spend": 3.0},
        to_offline=True,
    )
    assert result.written == 1 and result.offline_rows == 1
    offline = store.get_features("activity.*", [5]).collect()
    assert [(r.user_id, r.clicks, r.spend) for r in offline] == [(5, 2, 3.0)]
    store.close()


def test_unavailable_online_store_raises_or_falls_back_when_asked(
    spark: SparkSession,
    store_config: FeatureStoreConfig,
    redis_server_factory: Any,
) -> None:
    doomed = redis_server_factory()
    store = FeatureStore(online_config(store_config, doomed.url, sync_to_online=True), spark)
    store.register_features(PROFILE)
    store.write_features("profile", profiles(spark, [(1, T0, 30, "DE"), (2, T0, 41, None)]))
    assert store.get_online_features("profile.age", [2])[0].get("age") == 41  # synced on write
    doomed.stop()
    # The offline write still succeeds; its online sync fails and is only logged.
    store.write_features("profile", profiles(spark, [(2, T0 + timedelta(1), 42, "NL")]))

    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailableError, match="fallback_to_offline"):
        store.get_online_features("profile.*", [1, 2])
    assert time.monotonic() - started < 1.0

    vectors = store.get_online_features(
        "profile.*", [1, 2, 3], fallback_to_offline=True, defaults={"country": "??"}
    )
    assert isinstance(vectors, list)
    assert [v.source for v in vectors] == ["offline"] * 3
    assert [v.to_list() for v in vectors] == [[30, "DE"], [42, "NL"], [None, "??"]]
    assert vectors[0].event_time("age") == T0
    assert store.health_check()["healthy"] is False
    store.close()


def test_online_store_must_be_enabled(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    store = FeatureStore(store_config, spark)
    with pytest.raises(ConfigurationError, match="enable_online_store"):
        store.get_online_features("profile.age", [1])
    store.register_features(PROFILE)
    # Services can still be defined (checked against the registry).
    assert store.services.register("ages", ["profile.age"]).features == ("profile.age",)
    memory = FeatureStore(store_config.replace(enable_online_store=True), spark)
    assert memory.online.backend == "memory"
