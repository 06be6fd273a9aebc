"""`online_backend: memory`: the server fills its in-process store from Gold and keeps it fresh.

The values are written to Gold by a store object of their own (as `featurelake materialize` in
another process would), never through the server, so only the server's loading can bring them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema
from featurelake.server import ServerSettings, create_app
from featurelake.server.auth import ApiKeyStore
from featurelake.serving import FeatureStore
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

GROUP = FeatureGroupSchema.from_dict(
    {
        "name": "accounts",
        "entity_keys": [{"name": "account_id", "type": "bigint"}],
        "features": [
            {"name": "balance", "type": "double"},
            {"name": "tier", "type": "string"},
            {"name": "opened", "type": "timestamp"},
        ],
    }
)
COLUMNS = (
    "account_id bigint, event_timestamp timestamp, balance double, tier string, opened timestamp"
)


def rows(spark: SparkSession, *values: tuple[Any, ...]) -> Any:
    return spark.createDataFrame(list(values), COLUMNS)


def at(day: int) -> datetime:
    return datetime(2024, 3, day, 12, 0)


@pytest.fixture
def memory_server(
    tmp_path: Path, spark: SparkSession, serve_app: Callable[[Any], tuple[str, Callable[[], None]]]
) -> Iterator[tuple[httpx.Client, MaterializedFeatureStore]]:
    config = FeatureStoreConfig(
        storage_path=str(tmp_path / "store"),
        spark_shuffle_partitions=2,
        enable_online_store=True,
        online_backend=OnlineBackend.MEMORY,
        metadata_cache_ttl_seconds=0,
        retry_backoff_ms=20,
    )
    writer = MaterializedFeatureStore(
        StoreContext.of(config, spark)
    )  # "another process": not the server's
    writer.register_features(GROUP)
    writer.write_features(
        "accounts",
        rows(
            spark,
            (1, at(1), 10.0, "basic", at(1)),
            (1, at(2), 15.0, "plus", at(1)),  # the latest of account 1
            (2, at(1), 7.5, "basic", None),
        ),
    )
    store = FeatureStore(config)  # the server's own: no Spark session
    app = create_app(store, ServerSettings(key_cache_seconds=0, online_refresh_seconds=0))
    token = ApiKeyStore(Registry(config)).create("reader", "reader").token
    url, stop = serve_app(app)
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=120) as client:
            yield client, writer
    finally:
        stop()
        store.close()


def serve(client: httpx.Client, *entities: int) -> dict[int, dict[str, Any]]:
    response = client.post(
        "/v1/features/serve", json={"features": ["accounts.*"], "entities": list(entities)}
    )
    assert response.status_code == 200, response.text
    return {v["entity"]["account_id"]: v for v in response.json()["vectors"]}


def test_served_values_come_from_gold_and_follow_later_writes(
    memory_server: tuple[httpx.Client, MaterializedFeatureStore], spark: SparkSession
) -> None:
    client, writer = memory_server
    first = serve(client, 1, 2, 3)
    assert first[1]["values"] == {"balance": 15.0, "tier": "plus", "opened": "2024-03-01T12:00:00"}
    assert first[1]["event_times"]["balance"] == "2024-03-02T12:00:00"
    assert first[2]["values"] == {"balance": 7.5, "tier": "basic", "opened": None}
    assert first[3]["missing"] == ["balance", "tier", "opened"]  # never written anywhere
    health = client.get("/v1/health").json()["checks"]["online_from_gold"]
    assert health["loaded"] == {"accounts@1": 1} and health["failed"] == {}

    # Appends by another writer: newer values replace, an older event does not.
    writer.write_features(
        "accounts",
        rows(
            spark,
            (1, at(3), 20.0, "gold", at(1)),
            (2, at(1).replace(hour=6), 1.0, "old", None),
            (3, at(3), 3.0, "basic", at(3)),
        ),
    )
    second = serve(client, 1, 2, 3)
    assert second[1]["values"]["balance"] == 20.0 and second[1]["values"]["tier"] == "gold"
    assert second[2]["values"]["balance"] == 7.5  # the older row lost
    assert second[3]["values"] == {"balance": 3.0, "tier": "basic", "opened": "2024-03-03T12:00:00"}
    assert client.get("/v1/health").json()["checks"]["online_from_gold"]["loaded"] == {
        "accounts@1": 2
    }

    # A rewrite of the table (overwrite): what Gold holds now wins, even when older; entities
    # it no longer holds leave the store.
    writer.write_features("accounts", rows(spark, (1, at(1), 5.0, "basic", None)), mode="overwrite")
    third = serve(client, 1, 2, 3)
    assert third[1]["values"] == {"balance": 5.0, "tier": "basic", "opened": None}
    assert third[1]["event_times"]["balance"] == "2024-03-01T12:00:00"
    assert third[2]["missing"] == third[3]["missing"] == ["balance", "tier", "opened"]


def test_a_group_that_cannot_be_loaded_fails_its_requests_with_the_reason(
    tmp_path: Path, serve_app: Callable[[Any], tuple[str, Callable[[], None]]]
) -> None:
    config = FeatureStoreConfig(
        storage_path=str(tmp_path / "store"),
        enable_online_store=True,
        online_backend=OnlineBackend.MEMORY,
        metadata_cache_ttl_seconds=0,
    )
    registry = Registry(config)
    registry.register_group(GROUP)
    log = Path(str(registry.gold_location("accounts", 1).path)) / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("this is not a Delta commit\n")
    token = ApiKeyStore(registry).create("reader", "reader").token
    store = FeatureStore(config)
    url, stop = serve_app(create_app(store, ServerSettings(online_refresh_seconds=0)))
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=60) as client:
            served = client.post(
                "/v1/features/serve", json={"features": ["accounts.balance"], "entities": [1]}
            )
            health = client.get("/v1/health")
    finally:
        stop()
        store.close()
    assert served.status_code == 502, served.text
    error = served.json()["error"]
    assert "could not load 'accounts' v1 from its Gold table" in error["message"]
    assert "sync-online" in error["fix"]
    assert health.status_code == 503
    assert list(health.json()["checks"]["online_from_gold"]["failed"]) == ["accounts@1"]
