"""The feature server under test: the real app, served by uvicorn on a free loopback port.

One server for the whole folder (starting uvicorn, Redis and the store once), over a store in
its own tmp folder, with a real Redis online store and real Delta tables. Tests use their own
group names so they do not see each other's data.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.registry import Registry
from featurelake.schema import load_groups
from featurelake.server import ServerSettings, create_app
from featurelake.server.auth import ApiKeyStore
from featurelake.server.state import ServerState
from featurelake.serving import FeatureStore

EXAMPLE_FEATURES = Path(__file__).resolve().parents[2] / "conf" / "features"
REDIS_DB = 7  # other suites flush db 0 of the shared server
PROFILE = {
    "name": "profile",
    "entity_keys": ["customer_id"],
    "features": [
        {"name": "age", "type": "int", "min": 0, "max": 150},
        {"name": "segment", "type": "string", "allowed_values": ["bronze", "silver", "gold"]},
        {"name": "spend", "type": "double"},
    ],
    "owner": "growth",
    "tags": {"domain": "customer"},
    "freshness": "1d",
}
ORDERS = {
    "name": "orders",
    "entity_keys": ["store_id", "day"],
    "entity_key_types": {"store_id": "bigint", "day": "string"},
    "features": [{"name": "amount", "type": "double"}, {"name": "items", "type": "int"}],
    "owner": "ops",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve `app` with uvicorn in a thread on a free loopback port: (url, stop)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="featurelake-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def serve_app() -> Callable[[Any], tuple[str, Callable[[], None]]]:
    """`start_server` for tests that serve an app of their own."""
    return start_server


@dataclass
class LiveServer:
    """A running server: its URL, store, state and one key per role."""

    url: str
    store: FeatureStore
    state: ServerState
    keys: ApiKeyStore
    admin: str
    writer: str
    reader: str

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"X-API-Key": token} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)

    def new_key(self, name: str, role: str, **patterns: Any) -> str:
        return self.keys.create(name, role, **patterns).token


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: Any,
    spark: SparkSession,
    request: pytest.FixtureRequest,
) -> Iterator[LiveServer]:
    path, storage = str(tmp_path_factory.mktemp("server_store") / "store"), None
    if request.config.getoption("--spark-mode") == "s3":  # the store on the run's S3 server
        s3 = request.getfixturevalue("s3_server")
        path, storage = f"s3://featurelake/{uuid.uuid4().hex[:12]}/server", s3.settings()
    config = FeatureStoreConfig(
        storage_path=path,
        storage=storage,
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}",
        online_timeout_ms=2000,
        max_retries=8,
        retry_backoff_ms=20,
        metadata_cache_ttl_seconds=0,
    )
    store = FeatureStore(config, spark)
    settings = ServerSettings(
        max_body_bytes=64 * 1024,
        key_cache_seconds=0,
        audit_flush_seconds=0.2,
        offline_nice=0,  # the JVM is the whole test run's: its priority stays (test_priority.py)
    )
    app = create_app(store, settings)
    keys = ApiKeyStore(Registry(config))
    admin = keys.create("admin", "admin").token
    writer = keys.create("profile-writer", "writer", read=["profile.*"]).token
    reader = keys.create("age-reader", "reader", read=["profile.age", "orders"]).token
    url, stop = start_server(app)
    live = LiveServer(url, store, app.state.server, keys, admin, writer, reader)
    for schema in load_groups(EXAMPLE_FEATURES):  # the groups the OpenAPI examples use
        store.register_features(schema)
    with live.client(admin) as client:
        for group in (PROFILE, ORDERS):
            response = client.post("/v1/features/register", json=group)
            assert response.status_code == 200, response.text
    yield live
    stop()
    store.close()
