"""Fixtures of the seed tests: a store with an online part, in memory or on a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig, OnlineBackend


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def online_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def online_store_of(
    online_kind: str, store_config: FeatureStoreConfig, request: pytest.FixtureRequest
) -> Iterator[Callable[..., FeatureStore]]:
    """Makes FeatureStores with the online store of this test's kind enabled."""
    made: list[FeatureStore] = []

    def make(**changes: Any) -> FeatureStore:
        online: dict[str, Any] = {"online_backend": OnlineBackend.MEMORY}
        if online_kind == "redis":
            server = request.getfixturevalue("redis_server")
            online = {"online_backend": OnlineBackend.REDIS, "online_url": server.url}
        store = FeatureStore(store_config.replace(enable_online_store=True, **online, **changes))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def serve_app(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve `app` with uvicorn in a thread on a free loopback port: (url, stop)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="featurelake-seed-server", daemon=True)
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


@pytest.fixture
def http_app() -> Iterator[Callable[[Any], Any]]:
    """Serves apps on real uvicorn servers; gives an httpx client per app."""
    import httpx

    stops: list[Callable[[], None]] = []
    clients: list[httpx.Client] = []

    def start(app: Any) -> httpx.Client:
        url, stop = serve_app(app)
        stops.append(stop)
        client = httpx.Client(base_url=url, timeout=300)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for stop in stops:
        stop()
