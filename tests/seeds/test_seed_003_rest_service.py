"""Seed 003 (a REST feature service): its request bodies on featurelake's server, with a real
Redis online store and Delta tables. Where the bodies fit ours they are accepted (field
aliases, `entity.feature.v1` refs); where they cannot, the answer shows the body to send."""

from __future__ import annotations

import json
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
    yield {"client": http_app(app), "tokens": tokens, "store": store, "keys": keys}
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


def test_one_feature_statistics_with_the_seed_fields(api: dict[str, Any]) -> None:
    import pandas as pd

    call(api, "admin", "POST", "/v1/features/register", json=USER)
    store: FeatureStore = api["store"]
    rows = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "event_timestamp": pd.to_datetime(["2025-11-07T10:00:00"] * 4),
            "purchase_count_7d": pd.array([3, 4, None, 5], dtype="Int64"),
            "avg_order_value": [10.0, 20.0, 30.0, 40.0],
        }
    )
    store.write_features("user", rows)
    group = call(api, "reader", "GET", "/v1/features/user/stats")
    assert group.status_code == 200, group.text
    recorded = group.json()["features"]["purchase_count_7d"]

    one = call(api, "reader", "GET", "/v1/features/user.purchase_count_7d.v1/stats")
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["featureId"] == "user.purchase_count_7d.v1"
    seed = ("count", "nullCount", "uniqueValues", "mean", "min", "max")
    assert {name: body[name] for name in seed} == {
        "count": 4,
        "nullCount": 1,
        "uniqueValues": 3,
        "mean": 4.0,
        "min": 3,
        "max": 5,
    }
    assert body["std"] == pytest.approx(1.0)
    assert body["lastUpdated"] is not None and body["lastUpdated"] == group.json()["last_updated"]
    # the group's statistics record, in the seed's names (count there counts the non-null)
    assert (body["count"] - body["nullCount"], body["uniqueValues"], body["std"]) == (
        recorded["count"],
        recorded["distinct_approx"],
        recorded["std"],
    )
    assert (body["group"], body["version"], body["feature"]) == ("user", 1, "purchase_count_7d")
    latest = call(api, "reader", "GET", "/v1/features/user.purchase_count_7d/stats")
    assert latest.status_code == 200 and latest.json() == body
    # the group route answers as before
    assert set(group.json()["features"]) == {"purchase_count_7d", "avg_order_value"}

    unknown = call(api, "reader", "GET", "/v1/features/user.height.v1/stats")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "feature_not_found"
    assert unknown.json()["error"]["fix"] == "GET /v1/features/user lists its features."
    no_version = call(api, "reader", "GET", "/v1/features/user.purchase_count_7d.v2/stats")
    assert no_version.status_code == 404 and "[1]" in no_version.json()["error"]["fix"]
    every = call(api, "reader", "GET", "/v1/features/user.*/stats")
    assert every.status_code == 422 and "/v1/features/user/stats" in every.json()["error"]["fix"]


def _shown(response: Any) -> dict[str, Any]:
    error = dict(response.json()["error"])
    error.pop("request_id")
    return {"status": response.status_code, **error}


def test_one_feature_statistics_tell_a_key_without_rights_nothing(api: dict[str, Any]) -> None:
    import pandas as pd

    call(api, "admin", "POST", "/v1/features/register", json=USER)
    api["store"].write_features(
        "user",
        pd.DataFrame([record("u1", "2025-11-07T10:00:00", 3, 10.0)]).assign(
            event_timestamp=lambda f: pd.to_datetime(f.event_timestamp)
        ),
    )
    keys = api["keys"]
    api["tokens"]["avg"] = keys.create("avg-only", "reader", read=["user.avg_order_value"]).token
    api["tokens"]["other"] = keys.create("other-only", "reader", read=["orders.*"]).token

    readable = call(api, "avg", "GET", "/v1/features/user.avg_order_value.v1/stats")
    assert readable.status_code == 200 and readable.json()["count"] == 1
    hidden = call(api, "avg", "GET", "/v1/features/user.purchase_count_7d.v1/stats")
    unknown = call(api, "avg", "GET", "/v1/features/user.purchase_count_7e.v1/stats")
    assert hidden.status_code == 404
    assert _shown(hidden) == {
        **_shown(unknown),
        "message": _shown(unknown)["message"].replace("_7e", "_7d"),
    }
    no_group = call(api, "other", "GET", "/v1/features/user.purchase_count_7d.v1/stats")
    no_such = call(api, "other", "GET", "/v1/features/users.purchase_count_7d.v1/stats")
    assert no_group.status_code == 404 and no_group.json()["error"]["code"] == "group_not_found"
    assert _shown(no_group) == {
        **_shown(no_such),
        "message": _shown(no_such)["message"].replace("users", "user"),
    }


def test_one_feature_registration_shows_the_group_to_send(api: dict[str, Any]) -> None:
    seed = {
        "name": "purchase_count_7d",
        "description": "Number of purchases in the last 7 days",
        "valueType": "number",
        "entity": "user",
        "version": 1,
        "tags": ["user", "behavior"],
    }
    refused = call(api, "admin", "POST", "/v1/features/register", json=seed)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "foreign_shape"
    shown = json.loads(error["message"].split("Send this group body: ", 1)[1])
    assert shown == {
        "name": "user",
        "version": 1,
        "entity_keys": ["user_id"],
        "timestamp_key": "event_timestamp",
        "features": [
            {
                "name": "purchase_count_7d",
                "type": "double",
                "description": "Number of purchases in the last 7 days",
                "tags": ["user", "behavior"],
            }
        ],
    }
    assert "'user.purchase_count_7d.v1'" in error["fix"]
    # nothing was registered, under the feature's name or the entity's
    assert call(api, "admin", "GET", "/v1/features").json()["groups"] == []

    # the body shown registers as it is, and its feature is read in the seed's form
    registered = call(api, "admin", "POST", "/v1/features/register", json=shown)
    assert registered.status_code == 200, registered.text
    assert registered.json() == {"group": "user", "version": 1, "action": "created"}
    described = call(api, "reader", "GET", "/v1/features/user").json()
    assert described["schema"]["features"][0]["tags"] == ["user", "behavior"]
