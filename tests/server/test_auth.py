"""API keys over HTTP: missing, wrong, revoked keys; roles; feature-level ACL; the audit trail."""

from __future__ import annotations

import json

import pytest

from featurelake.errors import SchemaValidationError
from featurelake.server.auth import API_KEY_KIND, Access, ApiKeyStore, digest_of

from .conftest import LiveServer

pytestmark = [pytest.mark.redis]

SERVE_AGE = {"features": ["profile.age"], "entities": [1]}


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert "Traceback" not in json.dumps(body)
    return body["error"]  # type: ignore[no-any-return]


def test_requests_without_a_valid_key_are_refused_and_audited(live_server: LiveServer) -> None:
    with live_server.client() as anonymous:
        missing = anonymous.post("/v1/features/serve", json=SERVE_AGE)
        wrong = anonymous.post(
            "/v1/features/serve",
            json=SERVE_AGE,
            headers={"X-API-Key": live_server.reader[:-4] + "AAAA"},
        )
        garbage = anonymous.get("/v1/features", headers={"X-API-Key": "not-a-key"})
    assert missing.status_code == 401 and _error(missing)["code"] == "missing_api_key"
    assert wrong.status_code == 401 and _error(wrong)["code"] == "invalid_api_key"
    assert garbage.status_code == 401 and _error(garbage)["code"] == "invalid_api_key"
    assert missing.headers["x-request-id"]

    audit = live_server.state.audit.read(result="denied")
    by_request = {e["request_id"]: e for e in audit}
    for response, code in ((missing, "missing_api_key"), (wrong, "invalid_api_key")):
        event = by_request[response.headers["x-request-id"]]
        assert event["status"] == 401 and event["code"] == code
        assert event["path"] == "/v1/features/serve" and event["client"].startswith("127.0.0.1")
    claimed = by_request[wrong.headers["x-request-id"]]["key_id"]
    assert claimed == live_server.reader.split("_")[1]


def test_a_revoked_key_stops_working(live_server: LiveServer) -> None:
    token = live_server.new_key("short-lived", "reader")
    key_id = token.split("_")[1]
    with live_server.client(token) as client:
        assert client.get("/v1/features").status_code == 200
        live_server.keys.revoke(key_id)
        refused = client.get("/v1/features")
    assert refused.status_code == 401
    error = _error(refused)
    assert error["code"] == "revoked_api_key" and key_id in str(error["message"])


def test_bearer_tokens_are_accepted(live_server: LiveServer) -> None:
    with live_server.client() as client:
        response = client.get(
            "/v1/features", headers={"Authorization": f"Bearer {live_server.reader}"}
        )
    assert response.status_code == 200


def test_feature_level_acl_on_reads(live_server: LiveServer) -> None:
    with live_server.client(live_server.reader) as reader:
        allowed = reader.post("/v1/features/serve", json=SERVE_AGE)
        one_forbidden = reader.post(
            "/v1/features/serve", json={"features": ["profile.segment"], "entities": [1]}
        )
        wildcard = reader.post(
            "/v1/features/serve", json={"features": ["profile.*"], "entities": [1]}
        )
        listed = reader.get("/v1/features").json()
        described = reader.get("/v1/features/profile")
    assert allowed.status_code == 200
    for response in (one_forbidden, wildcard):
        assert response.status_code == 403
        error = _error(response)
        assert error["code"] == "feature_forbidden"
        assert "profile.segment" in str(error["message"])
        assert "profile.age" not in str(error["message"])
    # The key sees only what it may read.
    profile = next(g for g in listed["groups"] if g["name"] == "profile")
    assert profile["features"] == ["age"]
    assert described.status_code == 200

    mine = {one_forbidden.headers["x-request-id"], wildcard.headers["x-request-id"]}
    denied = [
        e for e in live_server.state.audit.read(code="feature_forbidden") if e["request_id"] in mine
    ]
    assert {e["request_id"] for e in denied} == mine
    assert all(e["key_name"] == "age-reader" and e["role"] == "reader" for e in denied)


def test_roles_limit_writes_and_registrations(live_server: LiveServer) -> None:
    record = {"customer_id": 5, "event_timestamp": "2024-01-01T00:00:00", "age": 30}
    with live_server.client(live_server.reader) as reader:
        read_only = reader.post("/v1/features/write", json={"group": "profile", "record": record})
    with live_server.client(live_server.writer) as writer:
        other_group = writer.post(
            "/v1/features/write",
            json={
                "group": "orders",
                "record": {
                    "store_id": 1,
                    "day": "mon",
                    "event_timestamp": "2024-01-01",
                    "amount": 1.0,
                },
            },
        )
        register = writer.post(
            "/v1/features/register",
            json={
                "name": "sneaky",
                "entity_keys": ["id"],
                "features": [{"name": "x", "type": "int"}],
            },
        )
    assert read_only.status_code == 403 and _error(read_only)["code"] == "role_forbidden"
    # A group outside the key's rights answers like an unknown group.
    assert other_group.status_code == 404 and _error(other_group)["code"] == "group_not_found"
    assert register.status_code == 403 and _error(register)["code"] == "role_forbidden"
    assert "sneaky" not in [g.name for g in live_server.store.registry.list_groups()]
    writes = live_server.state.audit.read(action="write", result="denied")
    assert read_only.headers["x-request-id"] in {e["request_id"] for e in writes}


def test_keys_are_stored_only_as_hashes(live_server: LiveServer) -> None:
    created = live_server.keys.create(
        "hash-check", "writer", read=["profile"], write=["profile.age"]
    )
    payload = live_server.keys.registry.get_object(API_KEY_KIND, created.key.id)
    assert payload is not None
    assert created.token not in json.dumps(payload)
    assert payload["sha256"] == digest_of(created.token)
    assert created.key.read == ("profile.*",) and created.key.write == ("profile.age",)
    assert created.key.can(Access.WRITE, "profile", "age")
    assert not created.key.can(Access.WRITE, "profile", "segment")
    assert created.key.can(Access.READ, "profile", "segment")
    assert not created.key.can(Access.READ, "orders", "amount")


def test_key_creation_is_validated(live_server: LiveServer) -> None:
    keys: ApiKeyStore = live_server.keys
    with pytest.raises(SchemaValidationError, match="Unknown role"):
        keys.create("x", "owner")
    with pytest.raises(SchemaValidationError, match="reader key cannot have write"):
        keys.create("x", "reader", write=["profile.*"])
    with pytest.raises(SchemaValidationError, match="pattern"):
        keys.create("x", "reader", read=[" "])
    with pytest.raises(SchemaValidationError, match="no API key"):
        keys.revoke("0123456789ab")
