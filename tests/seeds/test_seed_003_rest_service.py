"""Seed 003 (a REST feature service): its request bodies on featurelake's server, with a real
Redis online store and Delta tables. Where the bodies fit ours they are accepted (field
aliases, `entity.feature.v1` refs); where they cannot, the answer shows the body to send."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.registry import Registry
from featurelake.server import ServerSettings, create_app
from featurelake.server.auth import ApiKeyStore
from featurelake.serving import FeatureStore

pytestmark = [pytest.mark.spark, pytest.mark.redis]

USER = {
    "name": "user",
    "version": 1,
    "entity_keys": ["user_id"],
    "entity_key_types": {"user_id": "string"},
    "description": "Shopping behaviour per user",
    "features": [
        {"name": "purchase_count_7d", "type": "bigint", "description": "Purchases in 7 days"},
        {"name": "avg_order_value", "type": "double"},
    ],
    "tags": {"team": "behavior"},
}


def record(user: str, at: str, count: int, value: float) -> dict[str, Any]:
    return {
        "user_id": user,
        "event_timestamp": at,
        "purchase_count_7d": count,
        "avg_order_value": value,
    }


@pytest.fixture
def api(
    spark: SparkSession,
    store_config: FeatureStoreConfig,
    redis_server: Any,
    http_app: Callable[[Any], Any],
) -> Iterator[dict[str, Any]]:
    config = store_config.replace(
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=redis_server.url,
        online_history_size=3,
    )
    store = FeatureStore(config, spark)
    app = create_app(store, ServerSettings(key_cache_seconds=0, audit_flush_seconds=0.2))
    keys = ApiKeyStore(Registry(config))
    tokens = {role: keys.create(role, role).token for role in ("admin", "writer", "reader")}
    yield {"client": http_app(app), "tokens": tokens, "store": store}
    store.close()


def call(api: dict[str, Any], role: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"X-API-Key": api["tokens"][role]}
    return api["client"].request(method, path, headers=headers, **kwargs)


def test_register_write_serve_and_value_history(api: dict[str, Any]) -> None:
    registered = call(api, "admin", "POST", "/v1/features/register", json=USER)
    assert registered.status_code == 200, registered.text
    listed = call(api, "reader", "GET", "/v1/features", params={"tags": "team:behavior"})
    assert [g["name"] for g in listed.json()["groups"]] == ["user"]

    # write-batch: the records of a group (ours); three writes of user123 in time order
    for at, count, value in (
        ("2025-11-05T10:00:00Z", 3, 40.0),
        ("2025-11-06T10:00:00Z", 4, 45.0),
        ("2025-11-07T10:00:00Z", 5, 49.99),
    ):
        written = call(
            api,
            "writer",
            "POST",
            "/v1/features/write-batch",
            json={"group": "user", "records": [record("user123", at, count, value)]},
        )
        assert written.status_code == 200, written.text
        assert written.json()["online_written"] == 1

    # serve with the seed's body: entityIds, and versioned refs entity.feature.v1
    served = call(
        api,
        "reader",
        "POST",
        "/v1/features/serve",
        json={
            "entityIds": ["user123", "user456"],
            "features": ["user.purchase_count_7d.v1", "user.avg_order_value.v1"],
        },
    )
    assert served.status_code == 200, served.text
    first, second = served.json()["vectors"]
    assert first["values"] == {"purchase_count_7d": 5, "avg_order_value": 49.99}
    assert first["event_times"]["purchase_count_7d"] == "2025-11-07T10:00:00"
    assert second["missing"] == ["purchase_count_7d", "avg_order_value"]

    # value history of one feature of one entity: newest first, the last 3 kept
    history = call(
        api,
        "reader",
        "GET",
        "/v1/features/user/purchase_count_7d/history",
        params={"entity": "user123"},
    )
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["feature"] == "user.purchase_count_7d" and body["history_size"] == 3
    assert [(v["version"], v["value"]) for v in body["values"]] == [(3, 5), (2, 4), (1, 3)]
    assert body["values"][0]["event_time"] == "2025-11-07T10:00:00"
    limited = call(
        api,
        "reader",
        "GET",
        "/v1/features/user/purchase_count_7d/history",
        params={"entity": "user123", "limit": 1},
    )
    assert [v["version"] for v in limited.json()["values"]] == [3]
    unknown = call(
        api, "reader", "GET", "/v1/features/user/height/history", params={"entity": "user123"}
    )
    assert unknown.status_code == 404 and "lists its features" in unknown.json()["error"]["fix"]


def test_seed_bodies_that_cannot_hold_show_ours(api: dict[str, Any]) -> None:
    call(api, "admin", "POST", "/v1/features/register", json=USER)
    # a single value write would null the group's other features: refused with our body
    single = call(
        api,
        "writer",
        "POST",
        "/v1/features/write",
        json={"featureId": "user.purchase_count_7d.v1", "entityId": "user123", "value": 5},
    )
    assert single.status_code == 422
    assert '"group": "user@1", "record": {"user_id"' in single.json()["error"]["message"]
    batch = call(
        api,
        "writer",
        "POST",
        "/v1/features/write-batch",
        json={"values": [{"featureId": "user.avg_order_value.v1", "entityId": "u", "value": 1}]},
    )
    assert batch.status_code == 422 and '"records": [{' in batch.json()["error"]["message"]
    # a ref pinned at two versions: the error names our form
    conflicting = call(
        api,
        "reader",
        "POST",
        "/v1/features/serve",
        json={"entityIds": ["user123"], "features": ["user@1.purchase_count_7d.v2"]},
    )
    assert conflicting.status_code in (404, 422)
    assert "user@2.purchase_count_7d" in conflicting.json()["error"]["fix"]


def test_historical_query_with_the_seed_fields(api: dict[str, Any]) -> None:
    call(api, "admin", "POST", "/v1/features/register", json=USER)
    store: FeatureStore = api["store"]
    import pandas as pd

    store.write_features(
        "user",
        pd.DataFrame(
            [
                record("user123", "2025-11-02T00:00:00", 4, 40.0),
                record("user123", "2025-11-04T00:00:00", 5, 50.0),
                record("user123", "2025-11-09T00:00:00", 9, 90.0),
            ]
        ).assign(event_timestamp=lambda f: pd.to_datetime(f.event_timestamp)),
    )
    answered = call(
        api,
        "reader",
        "POST",
        "/v1/features/historical",
        json={
            "entityIds": ["user123"],
            "features": ["user.purchase_count_7d.v1"],
            "startTime": "2025-11-01T00:00:00.000Z",
            "endTime": "2025-11-07T00:00:00.000Z",
            "aggregation": "avg",
        },
    )
    assert answered.status_code == 200, answered.text
    (row,) = answered.json()["rows"]
    assert row["values"] == {"purchase_count_7d__avg": 4.5}
    both = call(
        api,
        "reader",
        "POST",
        "/v1/features/historical",
        json={
            "entityIds": ["user123"],
            "features": ["user.purchase_count_7d"],
            "startTime": "2025-11-01T00:00:00Z",
            "endTime": "2025-11-07T00:00:00Z",
            "aggregation": "avg",
            "aggregations": ["max"],
        },
    )
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"]
