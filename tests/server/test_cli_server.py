"""`featurelake api-key ...` in process, and `featurelake serve` as a real process without Spark."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.registry import Registry
from featurelake.server import ServerSettings, create_app
from featurelake.server.audit import AuditLog
from featurelake.server.auth import ApiKeyStore
from featurelake.server.staging import StagingTable
from featurelake.serving import FeatureStore

from .conftest import free_port, start_server

pytestmark = [pytest.mark.redis]

VENV_BIN = Path(sys.executable).parent
GROUP = {
    "name": "device",
    "entity_keys": ["device_id"],
    "entity_key_types": {"device_id": "string"},
    "features": [{"name": "battery", "type": "double", "min": 0, "max": 100}],
}


def _config(tmp_path: Path, redis_url: str) -> Path:
    path = tmp_path / "featurelake.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage_path": str(tmp_path / "store"),
                "enable_online_store": True,
                "online_backend": "redis",
                "online_url": redis_url,
            }
        )
    )
    return path


def _cli(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    return result


def test_api_key_commands(tmp_path: Path, redis_server: Any) -> None:
    config = _config(tmp_path, f"redis://127.0.0.1:{redis_server.port}/7")
    created = _cli(
        config, "api-key", "create", "ranker", "--role", "writer", "--read", "device", "--json"
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert key["key"].startswith(f"flk_{key['id']}_") and key["read"] == ["device.*"]
    assert key["write"] == ["device.*"] and key["revoked_at"] is None

    listed = _cli(config, "api-key", "list", "--json")
    assert key["key"] not in listed.stdout  # never shown again
    assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]

    revoked = _cli(config, "api-key", "revoke", key["id"], "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["revoked_at"]
    unknown = _cli(config, "api-key", "revoke", "000000000000")
    bad_role = _cli(config, "api-key", "create", "x", "--role", "root")
    assert unknown.exit_code == 2 and "no API key" in unknown.output
    assert bad_role.exit_code == 2 and "reader, writer, admin" in bad_role.output


def test_serve_starts_without_spark_and_serves(tmp_path: Path, redis_server: Any) -> None:
    config = _config(tmp_path, f"redis://127.0.0.1:{redis_server.port}/7")
    admin = json.loads(_cli(config, "api-key", "create", "ops", "--role", "admin", "--json").stdout)
    port = free_port()
    process = subprocess.Popen(
        [
            str(VENV_BIN / "featurelake"),
            "--config",
            str(config),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(
                    f"{url}/v1/health", headers={"X-API-Key": admin["key"]}, timeout=5
                )
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, process.stderr
        assert health.json()["checks"]["spark"] == {"healthy": True, "started": False}
        headers = {"X-API-Key": admin["key"]}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            assert client.post("/v1/features/register", json=GROUP).status_code == 200
            written = client.post(
                "/v1/features/write",
                json={
                    "group": "device",
                    "record": {
                        "device_id": "d-1",
                        "event_timestamp": "2024-06-01T08:00:00Z",
                        "battery": 87.5,
                    },
                },
            )
            served = client.post(
                "/v1/features/serve", json={"features": ["device.battery"], "entities": ["d-1"]}
            )
            described = client.get("/v1/features/device")
            after = client.get("/v1/health").json()
            anonymous = httpx.get(f"{url}/v1/health", timeout=5).json()
        assert written.status_code == 200, written.text
        assert served.json()["vectors"][0]["values"] == {"battery": 87.5}
        assert described.json()["staged_pending"] == 1
        assert after["checks"]["spark"]["started"] is False  # still no Spark session
        assert anonymous == {"healthy": True}  # without a key: up or down only
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.stderr is not None
    assert f"Feature catalog: {url}/ui" in process.stderr.read().decode()  # the catalog's link
    audit = AuditLog.for_store(FeatureStoreConfig.from_yaml(config, environ={}))
    events = audit.read(action="write")  # committed at shutdown at the latest
    assert [(e["result"], e["key_name"], e["status"]) for e in events] == [("ok", "ops", 200)]


def test_a_write_while_redis_is_down_says_the_records_were_staged(
    tmp_path: Path, redis_server_factory: Any
) -> None:
    redis = redis_server_factory()
    config = FeatureStoreConfig(
        storage_path=str(tmp_path / "store"),
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=redis.url,
        online_timeout_ms=300,
    )
    store = FeatureStore(config)
    app = create_app(store, ServerSettings(key_cache_seconds=0, audit_flush_seconds=0.1))
    token = ApiKeyStore(Registry(config)).create("ingest", "admin").token
    url, stop = start_server(app)
    record = {"device_id": "d-9", "event_timestamp": "2024-06-01T08:00:00", "battery": 50.0}
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=30) as client:
            assert client.post("/v1/features/register", json=GROUP).status_code == 200
            assert (
                client.post(
                    "/v1/features/write", json={"group": "device", "record": record}
                ).json()["online_written"]
                == 1
            )
            redis.stop()
            down = client.post(
                "/v1/features/write",
                json={"group": "device", "record": {**record, "battery": 40.0}},
            )
            health = client.get("/v1/health")
            served = client.post(
                "/v1/features/serve", json={"features": ["device.battery"], "entities": ["d-9"]}
            )
    finally:
        stop()
        store.close()
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["code"] == "online_store_unavailable"
    assert "were staged" in error["message"] and "Traceback" not in down.text
    assert health.status_code == 503 and health.json()["checks"]["online"]["healthy"] is False
    assert served.status_code == 503
    staged = StagingTable.for_store(config)
    assert [
        json.loads(r["payload"])["battery"] for r in staged.changes(1, staged.version() or 0)
    ] == [
        50.0,
        40.0,
    ]
