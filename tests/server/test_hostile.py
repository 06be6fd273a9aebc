"""The server against callers with limited keys, bad input, floods and slow work."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurelake.config import FeatureStoreConfig
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema
from featurelake.server import ServerSettings, create_app
from featurelake.server.audit import AuditLog
from featurelake.server.auth import ApiKeyStore
from featurelake.server.staging import StagingTable
from featurelake.server.state import ServerState
from featurelake.serving import FeatureStore

from .conftest import LiveServer, start_server

pytestmark = [pytest.mark.redis]

BETA = {
    "name": "beta",
    "entity_keys": ["id"],
    "entity_key_types": {"id": "bigint"},
    "features": [{"name": "pub", "type": "double"}, {"name": "secret", "type": "string"}],
}


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def beta(live_server: LiveServer) -> LiveServer:
    with live_server.client(live_server.admin) as admin:
        assert admin.post("/v1/features/register", json=BETA).status_code == 200
        written = admin.post(
            "/v1/features/write",
            json={
                "group": "beta",
                "record": {
                    "id": 1,
                    "event_timestamp": "2024-01-01T00:00:00",
                    "pub": 1.0,
                    "secret": "s",
                },
            },
        )
        assert written.status_code == 200, written.text
    return live_server


def _served(live: LiveServer, entity: int = 1) -> dict[str, Any]:
    with live.client(live.admin) as admin:
        response = admin.post(
            "/v1/features/serve", json={"features": ["beta.*"], "entities": [entity]}
        )
    assert response.status_code == 200, response.text
    return response.json()["vectors"][0]["values"]  # type: ignore[no-any-return]


def test_a_writer_cannot_blank_features_it_may_not_write(beta: LiveServer) -> None:
    partial = beta.new_key("pub-writer", "writer", read=["beta.pub"], write=["beta.pub"])
    later = {"id": 1, "event_timestamp": "2024-02-01T00:00:00", "pub": 2.0}
    with beta.client(partial) as client:
        refused = client.post("/v1/features/write", json={"group": "beta", "record": later})
    with beta.client(beta.writer) as other_group:  # may write profile.* only
        keys_only = other_group.post(
            "/v1/features/write",
            json={"group": "beta", "record": {"id": 1, "event_timestamp": "2024-03-01"}},
        )
    assert refused.status_code == 403 and _error(refused)["code"] == "feature_forbidden"
    assert "beta.secret" in _error(refused)["message"]
    assert keys_only.status_code == 404 and _error(keys_only)["code"] == "group_not_found"
    assert _served(beta) == {"pub": 1.0, "secret": "s"}  # neither write reached the store


def test_event_times_past_now_plus_the_allowance_are_refused(beta: LiveServer) -> None:
    staging = StagingTable.for_store(beta.store.config)
    before = staging.version()
    allowance = beta.state.settings.max_future_seconds
    soon = datetime.now(UTC) + timedelta(seconds=allowance / 2)
    with beta.client(beta.admin) as admin:
        forever = admin.post(
            "/v1/features/write-batch",
            json={
                "group": "beta",
                "records": [
                    {"id": 2, "event_timestamp": "2024-01-01T00:00:00", "pub": 1.0},
                    {"id": 2, "event_timestamp": "9999-12-31T00:00:00", "pub": 9.0},
                ],
            },
        )
        staged_after_refusal = staging.version()
        near = admin.post(
            "/v1/features/write",
            json={"group": "beta", "record": {"id": 3, "event_timestamp": soon.isoformat()}},
        )
    assert forever.status_code == 422
    error = _error(forever)
    assert error["code"] == "event_time_in_future"
    assert "record 1" in error["message"] and "9999-12-31" in error["message"]
    assert "max_future_seconds" in error["fix"]
    assert staged_after_refusal == before
    assert near.status_code == 200, near.text


def test_describe_shows_only_what_the_key_may_read(beta: LiveServer) -> None:
    partial = beta.new_key("pub-reader", "reader", read=["beta.pub"])
    with beta.client(partial) as client:
        limited = client.get("/v1/features/beta").json()
    with beta.client(beta.admin) as admin:
        full = admin.get("/v1/features/beta").json()
    assert [f["name"] for f in limited["schema"]["features"]] == ["pub"]
    assert "secret" not in json.dumps(limited)
    assert limited["state"]["lineage"] == []
    assert [f["name"] for f in full["schema"]["features"]] == ["pub", "secret"]
    assert full["dead_letters"] == 0


def test_unknown_and_forbidden_names_answer_the_same(beta: LiveServer) -> None:
    """The reader key may read profile.age and orders: `beta` exists but is not its own."""
    beta.store.services.register("beta_view", ["beta.pub"])
    root = str(Path(beta.store.config.storage_path).resolve())
    pairs = {}
    with beta.client(beta.reader) as reader:
        for name in ("beta", "no_such_group"):
            window = {"start": "2024-01-01T00:00:00", "end": "2024-02-01T00:00:00"}
            pairs.setdefault("describe", []).append(reader.get(f"/v1/features/{name}"))
            pairs.setdefault("stats", []).append(reader.get(f"/v1/features/{name}/stats"))
            pairs.setdefault("serve", []).append(
                reader.post(
                    "/v1/features/serve", json={"features": [f"{name}.pub"], "entities": [1]}
                )
            )
            pairs.setdefault("historical", []).append(
                reader.post(
                    "/v1/features/historical",
                    json={"features": [f"{name}.pub"], "entities": [1], **window},
                )
            )
        pairs["service"] = [
            reader.post("/v1/features/serve", json={"service": s, "entities": [1]})
            for s in ("beta_view", "no_such_service")
        ]
    with beta.client(beta.admin) as admin:
        unknown_feature = admin.post(
            "/v1/features/serve", json={"features": ["beta.colour"], "entities": [1]}
        )
    for what, (forbidden, unknown) in pairs.items():
        assert forbidden.status_code == unknown.status_code == 404, (what, forbidden.text)
        first, second = _error(forbidden), _error(unknown)
        assert first["code"] == second["code"], what
        hidden = ("beta_view", "beta") if what == "service" else ("beta",)
        missing = ("no_such_service",) if what == "service" else ("no_such_group",)
        text = first["message"]
        for name in hidden:
            text = text.replace(name, missing[0])
        assert text == second["message"], what
        assert first["fix"] == second["fix"], what
    everything = [r.text for rs in pairs.values() for r in rs] + [unknown_feature.text]
    for body in everything:
        assert root not in body and beta.store.config.storage_path not in body
        for other in ("customer_profile", "orders", "profile.", "secret"):
            assert other not in body
    assert unknown_feature.status_code == 404


def test_health_without_a_key_says_up_or_down_only(live_server: LiveServer) -> None:
    with live_server.client() as anonymous:
        bare = anonymous.get("/v1/health")
        wrong = anonymous.get("/v1/health", headers={"X-API-Key": "flk_000000000000_nope"})
    with live_server.client(live_server.reader) as reader:
        detailed = reader.get("/v1/health")
    assert bare.status_code == 200 and bare.json() == {"healthy": True}
    assert wrong.json() == {"healthy": True}
    assert live_server.store.config.storage_path not in bare.text
    assert set(detailed.json()["checks"]) >= {"registry", "store", "online", "spark"}


def test_historical_answers_over_the_size_limit_are_refused(live_server: LiveServer) -> None:
    limit = live_server.state.settings.max_historical_cells
    entities = list(range(5_000))
    with live_server.client(live_server.admin) as admin:
        refused = admin.post(
            "/v1/features/historical",
            json={
                "features": ["profile.age", "profile.spend"],
                "entities": entities,
                "start": "2024-01-01T00:00:00",
                "end": "2024-01-01T00:16:40",  # 1000 windows of 1s
                "window": "1s",
                "aggregations": ["latest"],
            },
        )
    assert limit < 5_000 * 1_000 * 2
    assert refused.status_code == 422
    error = _error(refused)
    assert error["code"] == "historical_too_large"
    assert "10,000,000" in error["message"] and f"{limit:,}" in error["message"]
    assert "max_historical_cells" in error["fix"]


@pytest.fixture
def limited_server(probe: LiveServer) -> Iterator[tuple[str, ServerState]]:
    """A second app on the same store: one offline thread, no queue, two requests per key."""
    settings = ServerSettings(
        key_cache_seconds=0,
        audit_flush_seconds=0.2,
        offline_threads=1,
        offline_queue=0,
        max_concurrent_per_key=2,
        retry_after_seconds=7,
    )
    app = create_app(probe.store, settings)
    url, stop = start_server(app)
    yield url, app.state.server
    stop()


HISTORICAL = {
    "features": ["probe.v"],
    "entities": [1],
    "start": "2024-01-01T00:00:00",
    "end": "2024-06-01T00:00:00",
    "engine": "spark",
}


@pytest.fixture(scope="module")
def probe(live_server: LiveServer) -> LiveServer:
    """A group with rows in Gold, for historical reads."""
    import pandas as pd

    store = live_server.store
    store.register_features(
        FeatureGroupSchema(
            "probe", ["id"], [{"name": "v", "type": "double"}], entity_key_types={"id": "bigint"}
        )
    )
    store.write_features(
        "probe",
        pd.DataFrame(
            {"id": [1, 2], "event_timestamp": [datetime(2024, 2, 1)] * 2, "v": [1.0, 2.0]}
        ),
    )
    return live_server


def test_offline_work_has_its_own_capacity_apart_from_serving(
    live_server: LiveServer, limited_server: tuple[str, ServerState]
) -> None:
    url, state = limited_server
    headers = {"X-API-Key": live_server.admin}
    release = threading.Event()
    blocker = state.offline.submit(lambda: release.wait(60))  # the one offline thread
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            busy = client.post("/v1/features/historical", json=HISTORICAL)
            served = client.post(
                "/v1/features/serve", json={"features": ["profile.age"], "entities": [1]}
            )
            health = client.get("/v1/health")
    finally:
        release.set()
    blocker.result(timeout=60)
    assert busy.status_code == 503 and _error(busy)["code"] == "server_busy"
    assert busy.headers["retry-after"] == "7"
    assert served.status_code == 200 and health.status_code == 200
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        free = client.post("/v1/features/historical", json=HISTORICAL)
    assert free.status_code == 200, free.text
    assert free.json()["rows"][0]["values"] == {"v__latest": 1.0}
    assert state.offline.in_flight == 0


def test_offline_work_past_the_timeout_gets_504(probe: LiveServer) -> None:
    live_server = probe
    settings = ServerSettings(key_cache_seconds=0, offline_timeout_seconds=0.001)
    app = create_app(live_server.store, settings)
    url, stop = start_server(app)
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": live_server.admin}) as client:
            late = client.post("/v1/features/historical", json=HISTORICAL, timeout=120)
        deadline = time.monotonic() + 120
        while app.state.server.offline.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)  # the abandoned work returns (its Spark job interrupted)
    finally:
        stop()
    assert late.status_code == 504 and _error(late)["code"] == "offline_timeout"
    assert int(late.headers["retry-after"]) >= 1


def test_each_key_has_a_limit_of_requests_in_flight(
    live_server: LiveServer, limited_server: tuple[str, ServerState]
) -> None:
    assert ServerSettings().max_concurrent_per_key > 0  # on by default
    url, state = limited_server
    token = live_server.new_key("busy-reader", "reader", read=["profile.*"])
    key_id = token.split("_")[1]
    serve = {"features": ["profile.age"], "entities": [1]}
    state.key_limits.acquire(key_id)
    state.key_limits.acquire(key_id)  # two requests of this key in flight
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            limited = client.post("/v1/features/serve", json=serve, headers={"X-API-Key": token})
            other = client.post(
                "/v1/features/serve", json=serve, headers={"X-API-Key": live_server.reader}
            )
    finally:
        state.key_limits.release(key_id)
    with httpx.Client(base_url=url, timeout=60) as client:
        again = client.post("/v1/features/serve", json=serve, headers={"X-API-Key": token})
    state.key_limits.release(key_id)
    assert limited.status_code == 429 and _error(limited)["code"] == "too_many_requests"
    assert limited.headers["retry-after"] == "7"
    assert other.status_code == 200 and again.status_code == 200
    # every finished request gives its place back (released once the response has been sent)
    deadline = time.monotonic() + 10
    while state.key_limits.in_flight(key_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.key_limits.in_flight(key_id) == 0


def test_metrics_label_methods_from_a_fixed_set(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin) as client:
        for number in range(30):
            client.request(f"MADEUP{number}", "/v1/features")
        text = client.get("/v1/metrics").text
    assert "MADEUP" not in text
    methods = {
        line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line
    }
    assert "OTHER" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


def test_a_flood_of_unauthenticated_requests_writes_few_audit_rows(tmp_path: Path) -> None:
    config = FeatureStoreConfig(storage_path=str(tmp_path / "store"))
    store = FeatureStore(config)
    settings = ServerSettings(
        audit_flush_seconds=0.1,
        unauthenticated_audit_rows=3,
        unauthenticated_audit_window_seconds=3600,
    )
    app = create_app(store, settings)
    ApiKeyStore(Registry(config)).create("someone", "reader")
    url, stop = start_server(app)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            answers = [client.get("/v1/features").status_code for _ in range(40)]
    finally:
        stop()
        store.close()
    assert answers == [401] * 40
    rows = AuditLog.for_store(config).read(status=401)
    single = [r for r in rows if r["code"] == "missing_api_key"]
    summaries = [r for r in rows if r["code"] == "unauthenticated_summary"]
    assert len(single) == 3 and len(summaries) == 1
    assert summaries[0]["detail"].startswith("37 more unauthenticated request(s) from 127.0.0.1")
