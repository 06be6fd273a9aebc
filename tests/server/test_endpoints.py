"""Every endpoint over real HTTP: register, list, describe, write, serve, health, metrics."""

from __future__ import annotations

import json

import pytest

from featurelake.server.staging import StagingTable

from .conftest import LiveServer

pytestmark = [pytest.mark.redis]


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    assert "Traceback" not in json.dumps(body)
    return body["error"]  # type: ignore[no-any-return]


def test_register_is_idempotent_and_refuses_incompatible_changes(live_server: LiveServer) -> None:
    group = {
        "name": "reg_check",
        "entity_keys": ["id"],
        "features": [{"name": "x", "type": "double"}],
    }
    with live_server.client(live_server.admin) as admin:
        created = admin.post("/v1/features/register", json=group)
        again = admin.post("/v1/features/register", json=group)
        added = admin.post(
            "/v1/features/register",
            json={**group, "features": [*group["features"], {"name": "y", "type": "int"}]},
        )
        retyped = admin.post(
            "/v1/features/register", json={**group, "features": [{"name": "x", "type": "string"}]}
        )
        bad_type = admin.post(
            "/v1/features/register", json={**group, "features": [{"name": "x", "type": "nope"}]}
        )
        no_features = admin.post("/v1/features/register", json={**group, "features": []})
    assert created.json() == {"group": "reg_check", "version": 1, "action": "created"}
    assert again.json()["action"] == "unchanged"
    assert added.json()["action"] == "updated"
    assert retyped.status_code == 422
    assert _error(retyped)["code"] == "schema_validation_failed"
    assert "version" in str(_error(retyped)["fix"])
    assert bad_type.status_code == 422 and _error(bad_type)["code"] == "schema_validation_failed"
    assert no_features.status_code == 422
    assert _error(no_features)["code"] == "schema_validation_failed"
    schema = live_server.store.registry.get_group("reg_check")
    assert schema.feature_names == ("x", "y")
    audited = live_server.state.audit.read(action="register", resource="reg_check@1")
    assert sorted(e["result"] for e in audited).count("ok") == 3
    assert {e["status"] for e in audited} >= {200, 422}


def test_list_filters_and_pages(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin) as admin:
        everything = admin.get("/v1/features").json()
        by_entity = admin.get("/v1/features", params={"entity": "store_id"}).json()
        by_tag = admin.get("/v1/features", params={"tag": "domain=customer"}).json()
        by_owner = admin.get("/v1/features", params={"owner": "ops"}).json()
        by_name = admin.get("/v1/features", params={"group": "PROF"}).json()
        page = admin.get("/v1/features", params={"limit": 1, "offset": 1}).json()
        bad_limit = admin.get("/v1/features", params={"limit": 0})
    names = [g["name"] for g in everything["groups"]]
    assert {"profile", "orders"} <= set(names) and names == sorted(names)
    assert [g["name"] for g in by_entity["groups"]] == ["orders"]
    assert [g["name"] for g in by_tag["groups"]] == ["customer_profile", "profile"]
    assert [g["name"] for g in by_owner["groups"]] == ["orders"]
    assert [g["name"] for g in by_name["groups"]] == ["customer_profile", "profile"]
    assert page["total"] == everything["total"] and page["groups"] == everything["groups"][1:2]
    assert bad_limit.status_code == 422 and _error(bad_limit)["code"] == "invalid_request"


def test_describe_a_group(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin) as admin:
        described = admin.get("/v1/features/orders").json()
        pinned = admin.get("/v1/features/orders@1")
        unknown = admin.get("/v1/features/nope")
        unknown_version = admin.get("/v1/features/orders@9")
    assert described["group"] == "orders" and described["versions"] == [1]
    assert described["schema"]["entity_keys"] == ["store_id", "day"]
    assert set(described["state"]) >= {"last_updated", "row_count", "delta_version", "writes"}
    assert set(described["freshness"]) == {"age_seconds", "sla_seconds", "fresh", "last_event"}
    assert described["statistics"] is None  # nothing written to Gold yet
    assert pinned.status_code == 200
    assert unknown.status_code == 404 and _error(unknown)["code"] == "group_not_found"
    assert unknown_version.status_code == 404
    assert "1" in str(_error(unknown_version)["fix"])


def test_write_then_serve_with_event_times_and_cache_metadata(live_server: LiveServer) -> None:
    record = {
        "customer_id": 101,
        "event_timestamp": "2024-03-01T12:00:00+01:00",
        "age": 41,
        "segment": "gold",
        "spend": 12.5,
    }
    with live_server.client(live_server.writer) as writer:
        written = writer.post("/v1/features/write", json={"group": "profile", "record": record})
        older = writer.post(
            "/v1/features/write",
            json={
                "group": "profile",
                "record": {**record, "event_timestamp": "2024-02-01", "age": 40},
            },
        )
        served = writer.post(
            "/v1/features/serve",
            json={
                "features": ["profile.age", "profile.segment"],
                "entities": [101, {"customer_id": 999}],
            },
        )
    assert written.status_code == 200, written.text
    body = written.json()
    assert body["staged"] == 1 and body["online"] == "written" and body["online_written"] == 1
    assert older.json()["online_rejected_older"] == 1  # an older event never overwrites
    result = served.json()
    assert served.status_code == 200, served.text
    assert result["features"] == ["age", "segment"]
    first, second = result["vectors"]
    assert first["entity"] == {"customer_id": 101}
    assert first["values"] == {"age": 41, "segment": "gold"}
    assert first["event_times"]["age"] == "2024-03-01T11:00:00"  # UTC
    assert first["missing"] == []
    assert second["values"] == {"age": None, "segment": None}
    assert second["missing"] == ["age", "segment"]
    meta = result["metadata"]
    assert meta["cache_hits"] == 2 and meta["cache_misses"] == 2
    assert meta["missing_features"] == ["age", "segment"] and meta["latency_ms"] > 0

    staged = [r for r in StagingTable.for_store(live_server.store.config).changes(1, 10_000)]
    mine = [r for r in staged if r["group"] == "profile" and r["entity"] == "101"]
    assert len(mine) == 2 and json.loads(mine[0]["payload"])["age"] == 41
    audit = live_server.state.audit.read(action="write", result="ok")
    assert written.headers["x-request-id"] in {e["request_id"] for e in audit}


def test_a_bad_record_refuses_the_whole_batch(live_server: LiveServer) -> None:
    staging = StagingTable.for_store(live_server.store.config)
    before = staging.version()
    good = {"customer_id": 201, "event_timestamp": "2024-01-01T00:00:00", "age": 20}
    bad_records = [
        {**good, "age": 200},  # above max
        {**good, "segment": "platinum"},  # not allowed
        {**good, "age": "old"},  # wrong type
        {**good, "colour": "red"},  # unknown column
        {"event_timestamp": "2024-01-01", "age": 1},  # no entity key
        {**good, "event_timestamp": "yesterday"},  # not a time
    ]
    with live_server.client(live_server.writer) as writer:
        refused = writer.post(
            "/v1/features/write-batch", json={"group": "profile", "records": [good, *bad_records]}
        )
        served = writer.post(
            "/v1/features/serve", json={"features": ["profile.age"], "entities": [201]}
        )
        empty = writer.post("/v1/features/write-batch", json={"group": "profile", "records": []})
        not_json = writer.post(
            "/v1/features/write",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert refused.status_code == 422
    error = _error(refused)
    assert error["code"] == "schema_validation_failed"
    message = str(error["message"])
    for fragment in (
        "record 1",
        "above its max",
        "record 2",
        "platinum",
        "record 3",
        "record 4",
        "colour",
        "record 5",
        "customer_id",
        "record 6",
        "yesterday",
    ):
        assert fragment in message
    assert "record 0" not in message and "Nothing was written" in message
    assert staging.version() == before  # the staging table did not change
    assert served.json()["vectors"][0]["values"] == {"age": None}
    assert empty.status_code == 422 and _error(empty)["code"] == "invalid_request"
    assert not_json.status_code == 422 and _error(not_json)["code"] == "invalid_request"
    audit = live_server.state.audit.read(action="write", result="rejected")
    assert refused.headers["x-request-id"] in {e["request_id"] for e in audit}


def test_multi_key_groups_and_services(live_server: LiveServer) -> None:
    records = [
        {
            "store_id": 1,
            "day": "mon",
            "event_timestamp": "2024-01-01T10:00:00",
            "amount": 10.0,
            "items": 2,
        },
        {
            "store_id": 2,
            "day": "mon",
            "event_timestamp": "2024-01-01T10:00:00",
            "amount": 5.0,
            "items": 1,
        },
    ]
    live_server.store.services.register("ops_view", ["orders.amount"])
    with live_server.client(live_server.admin) as admin:
        written = admin.post(
            "/v1/features/write-batch", json={"group": "orders@1", "records": records}
        )
        by_dict = admin.post(
            "/v1/features/serve",
            json={"features": ["orders.*"], "entities": [{"store_id": 2, "day": "mon"}]},
        )
        scalar = admin.post("/v1/features/serve", json={"features": ["orders.*"], "entities": [2]})
        service = admin.post(
            "/v1/features/serve",
            json={"service": "ops_view", "entities": [{"store_id": 1, "day": "mon"}]},
        )
        unknown_service = admin.post(
            "/v1/features/serve", json={"service": "nope", "entities": [1]}
        )
        both = admin.post(
            "/v1/features/serve",
            json={"service": "ops_view", "features": ["orders.amount"], "entities": [1]},
        )
        unknown_feature = admin.post(
            "/v1/features/serve", json={"features": ["orders.colour"], "entities": [1]}
        )
    assert written.json()["online_written"] == 2
    assert by_dict.json()["vectors"][0]["values"] == {"amount": 5.0, "items": 1}
    assert scalar.status_code == 422 and _error(scalar)["code"] == "schema_validation_failed"
    assert service.json()["vectors"][0]["values"] == {"amount": 10.0}
    assert service.json()["metadata"]["service"] == "ops_view"
    assert (
        unknown_service.status_code == 404
        and _error(unknown_service)["code"] == "feature_not_found"
    )
    assert both.status_code == 422 and _error(both)["code"] == "invalid_request"
    assert unknown_feature.status_code == 404
    assert _error(unknown_feature)["code"] == "feature_not_found"


def test_bodies_over_the_limit_get_413(live_server: LiveServer) -> None:
    limit = live_server.state.settings.max_body_bytes
    records = [
        {"customer_id": i, "event_timestamp": "2024-01-01T00:00:00", "segment": "gold"}
        for i in range(limit // 40)
    ]
    payload = json.dumps({"group": "profile", "records": records}).encode()
    assert len(payload) > limit

    def chunks() -> object:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    with live_server.client(live_server.writer) as writer:
        declared = writer.post(
            "/v1/features/write-batch",
            content=payload,
            headers={"content-type": "application/json"},
        )
        streamed = writer.post(
            "/v1/features/write-batch",
            content=chunks(),  # type: ignore[arg-type]
            headers={"content-type": "application/json"},
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert _error(response)["code"] == "body_too_large"


def test_unknown_routes_and_methods_answer_json(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin) as admin:
        missing = admin.get("/v1/nothing-here")
        method = admin.delete("/v1/features/serve")
    assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
    assert method.status_code == 405 and _error(method)["code"] == "method_not_allowed"


def test_health_and_metrics(live_server: LiveServer) -> None:
    with live_server.client(live_server.reader) as client:
        client.post("/v1/features/serve", json={"features": ["profile.age"], "entities": [1, 2]})
        health = client.get("/v1/health")
        metrics = client.get("/v1/metrics")
        openapi = client.get("/v1/openapi.json")
    assert health.status_code == 200
    checks = health.json()["checks"]
    assert health.json()["healthy"] is True
    assert checks["registry"]["healthy"] and checks["registry"]["groups"] >= 2
    assert checks["online"]["healthy"] and checks["online"]["backend"] == "redis"
    assert checks["spark"]["started"] is True  # the test store shares the suite's session
    assert checks["store"]["healthy"]
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'featurelake_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/features/serve"'
        in text
    )
    assert (
        'featurelake_http_request_duration_quantile_seconds{quantile="0.99",route="/v1/features/serve"}'
        in text
    )
    assert 'featurelake_online_lookups_total{result="miss"}' in text
    assert "featurelake_online_cache_hit_ratio" in text
    assert 'featurelake_http_errors_total{code="' in text
    paths = openapi.json()["paths"]
    for path in (
        "/v1/features/register",
        "/v1/features",
        "/v1/features/{group}",
        "/v1/features/{group}/stats",
        "/v1/features/write",
        "/v1/features/write-batch",
        "/v1/features/serve",
        "/v1/features/historical",
        "/v1/health",
        "/v1/metrics",
    ):
        assert path in paths
