"""Composite features: the same values offline (training sets) and online (vectors)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import SchemaValidationError
from featurelake.schema import FeatureGroupSchema
from featurelake.serving import FeatureStore

pytestmark = [pytest.mark.spark]

T0 = datetime(2024, 6, 1)
PROFILE = FeatureGroupSchema(
    "profile",
    ["user_id"],
    [{"name": "tenure_days", "type": "int"}, {"name": "vip", "type": "boolean"}],
)
ORDERS = FeatureGroupSchema(
    "orders",
    ["user_id"],
    [{"name": "spend", "type": "double"}, {"name": "orders", "type": "bigint"}],
    composites=[
        {"name": "spend_per_order", "expression": "spend / orders"},
        {"name": "spend_per_day", "expression": "spend / NULLIF(profile.tenure_days, 0)"},
        {
            "name": "tier",
            "expression": "CASE WHEN profile.vip = 1 AND spend > 100 THEN 2 "
            "WHEN spend > 100 THEN 1 ELSE 0 END",
        },
        {"name": "log_spend", "expression": "ROUND(LN(spend + 1), 6) + SQRT(orders)"},
    ],
)
COMPOSITES = ["spend_per_order", "spend_per_day", "tier", "log_spend"]


def store_with(
    store: FeatureStore, profiles: list[tuple[Any, ...]], orders: list[tuple[Any, ...]]
) -> FeatureStore:
    """`store` with PROFILE and ORDERS registered and these rows written."""
    store.register_features(PROFILE)
    store.register_features(ORDERS)
    spark = store.offline.spark
    schema = "user_id bigint, event_timestamp timestamp, tenure_days int, vip boolean"
    store.write_features("profile", spark.createDataFrame(profiles, schema))
    schema = "user_id bigint, event_timestamp timestamp, spend double, orders bigint"
    store.write_features("orders", spark.createDataFrame(orders, schema))
    return store


def test_composites_equal_offline_and_online(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    config = store_config.replace(enable_online_store=True, online_backend=OnlineBackend.MEMORY)
    store = store_with(
        FeatureStore(config, spark),
        [(1, T0, 400, True), (2, T0, 0, False), (3, T0, None, None)],
        [(1, T0, 250.0, 5), (2, T0, 90.5, 0), (3, T0, None, 2), (4, T0, 120.0, 3)],
    )
    store.sync_to_online("profile")
    store.sync_to_online("orders")
    refs = ["orders.spend", *[f"orders.{c}" for c in COMPOSITES]]
    entities = pd.DataFrame(
        {"user_id": [1, 2, 3, 4, 5], "event_timestamp": [T0 + timedelta(days=1)] * 5}
    )
    offline = store.get_historical_features(entities, refs).orderBy("user_id").toPandas()
    assert list(offline.columns) == ["user_id", "event_timestamp", "spend", *COMPOSITES]
    vectors = store.get_online_features(refs, [1, 2, 3, 4, 5])
    assert vectors[0].names == ("spend", *COMPOSITES)
    for vector, (_, row) in zip(vectors, offline.iterrows(), strict=True):
        for name in ("spend", *COMPOSITES):
            online_value, offline_value = vector.get(name), row[name]
            if pd.isna(offline_value):
                assert online_value is None, (name, vector.entity)
            else:
                assert online_value == offline_value, (name, vector.entity)
    first = vectors[0].to_dict()
    assert first["spend_per_order"] == 50.0 and first["tier"] == 2.0
    assert first["spend_per_day"] == 250.0 / 400
    assert vectors[1].get("spend_per_order") is None  # 90.5 / 0 is null
    assert vectors[1].get("spend_per_day") is None  # NULLIF(0, 0)
    assert vectors[4].get("tier") == 0.0 and not vectors[4].found("tier")  # ELSE 0, as offline
    assert vectors[0].event_time("spend_per_day") == T0

    whole = store.get_historical_features(entities, "orders.*").columns
    assert whole == ["user_id", "event_timestamp", "spend", "orders", *COMPOSITES]
    served = store.get_online_features("orders.*", [1], defaults={"tier": -1.0})[0]
    assert served.names == ("spend", "orders", *COMPOSITES)
    assert store.get_online_features(["orders.tier"], [9], defaults={"tier": -1.0})[
        0
    ].to_list() == [-1.0]


def test_composites_fall_back_to_the_offline_store_with_their_inputs(
    spark: SparkSession, store_config: FeatureStoreConfig, redis_server_factory: Any
) -> None:
    """With the online store down, `fallback_to_offline=True` computes the composites from the
    Gold values of their inputs, across groups, as online would."""
    doomed = redis_server_factory()
    config = store_config.replace(
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=doomed.url,
        online_timeout_ms=300,
    )
    store = store_with(
        FeatureStore(config, spark),
        [(1, T0, 400, True), (2, T0, 0, False)],
        [(1, T0, 250.0, 5), (2, T0, 90.5, 0)],
    )
    doomed.stop()
    refs = ["orders.spend_per_order", "orders.spend_per_day", "orders.tier"]
    vectors = store.get_online_features(refs, [1, 2, 3], fallback_to_offline=True)
    assert isinstance(vectors, list)
    assert [v.names for v in vectors] == [("spend_per_order", "spend_per_day", "tier")] * 3
    assert [v.source for v in vectors] == ["offline"] * 3
    assert vectors[0].to_list() == [50.0, 250.0 / 400, 2.0]
    assert vectors[1].to_list() == [None, None, 0.0]  # 90.5 / 0 and NULLIF(0, 0) are null
    assert vectors[2].to_list() == [None, None, 0.0] and not vectors[2].found("tier")
    assert vectors[0].event_time("spend_per_day") == T0
    store.close()


def test_a_composite_must_read_existing_numeric_features(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    store = FeatureStore(store_config, spark)
    store.register_features(PROFILE)

    def group(expression: str) -> Any:
        return FeatureGroupSchema(
            "bad",
            ["user_id"],
            [{"name": "x", "type": "double"}, {"name": "label", "type": "string"}],
            composites=[{"name": "c", "expression": expression}],
        )

    with pytest.raises(SchemaValidationError, match=r"profile\.nope"):
        store.register_features(group("x + profile.nope"))
    with pytest.raises(SchemaValidationError, match="not a number"):
        store.register_features(group("x + label"))
    with pytest.raises(Exception, match="missing_group"):
        store.register_features(group("x + missing_group.y"))
    assert [g.name for g in store.registry.list_groups()] == ["profile"]
