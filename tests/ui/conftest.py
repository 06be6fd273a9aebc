"""The catalog under test: a real store with written groups, served by uvicorn on a loopback
port, and Debian's Chromium driven through Playwright (never a downloaded browser).

The data is written with the shared Spark session; the server gets its own `FeatureStore`
without one, so the pages prove they need no Spark.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.registry import Lineage, Registry
from featurelake.schema import FeatureGroupSchema
from featurelake.server import ServerSettings, create_app
from featurelake.server.auth import ApiKeyStore
from featurelake.server.state import ServerState
from featurelake.serving import FeatureStore
from featurelake.times import utc_now

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROFILE = {
    "name": "profile",
    "entity_keys": [{"name": "customer_id", "type": "bigint"}],
    "description": "Who the customer is.",
    "features": [
        {"name": "age", "type": "int", "min": 0, "max": 150, "unit": "years"},
        {"name": "segment", "type": "string", "allowed_values": ["bronze", "silver", "gold"]},
        {"name": "spend", "type": "double", "description": "Lifetime spend."},
    ],
    "owner": "growth",
    "tags": {"domain": "customer", "pii": "low"},
    "freshness": "3650d",
    "checks": {"rules": [{"type": "range", "feature": "age", "min": 0, "max": 150}]},
}
PAYMENTS = {
    "name": "payments",
    "entity_keys": [{"name": "customer_id", "type": "bigint"}],
    "description": "Card payments, one row per payment.",
    "features": [{"name": "amount", "type": "double"}, {"name": "merchant", "type": "string"}],
    "owner": "payments-team",
    "tags": {"domain": "payments"},
}
PAYMENT_TOTALS = {
    "name": "payment_totals",
    "entity_keys": [{"name": "customer_id", "type": "bigint"}],
    "description": "Rolling payment totals.",
    "event_source": {"group": "payments"},
    "aggregations": [{"column": "amount", "function": "sum", "windows": ["7d"]}],
    "owner": "payments-team",
    "tags": {"domain": "payments"},
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
    thread = threading.Thread(target=server.run, name="featurelake-ui-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the catalog test server did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", stop


@dataclass
class Catalog:
    """A running catalog: URL, the server's state, and keys."""

    url: str
    state: ServerState
    admin: str
    age_only: str


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("catalog_store")
    config = FeatureStoreConfig(
        storage_path=str(root / "store"),
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        metadata_cache_ttl_seconds=0,
    )
    writer = FeatureStore(config, spark)
    for group in (PROFILE, PAYMENTS, PAYMENT_TOTALS):
        writer.register_features(FeatureGroupSchema.from_dict(group))
    now = utc_now().replace(microsecond=0)
    segments = ["bronze", "silver", "gold"]
    profiles = [
        (i, now - timedelta(hours=i % 5), 20 + i % 50, segments[i % 3], float(i * 7 % 300))
        for i in range(1, 61)
    ]
    writer.write_features(
        "profile",
        spark.createDataFrame(
            profiles,
            "customer_id bigint, event_timestamp timestamp, age int, segment string, spend double",
        ),
        lineage=Lineage(sources=("silver.customers",), job="nightly_profile"),
    )
    payments = [
        (i % 20 + 1, now - timedelta(hours=i), float(i % 40), f"m{i % 4}") for i in range(80)
    ]
    writer.write_features(
        "payments",
        spark.createDataFrame(
            payments,
            "customer_id bigint, event_timestamp timestamp, amount double, merchant string",
        ),
    )
    entities = spark.createDataFrame(
        [(i, now) for i in range(1, 11)], "customer_id bigint, event_timestamp timestamp"
    )
    writer.get_training_set(entities, ["profile.age", "profile.segment"], name="churn_v1")
    keys = ApiKeyStore(Registry(config))
    admin = keys.create("catalog-admin", "admin").token
    age_only = keys.create("age-reader", "reader", read=["profile.age"]).token
    served = FeatureStore(config)  # no Spark session: the catalog must not need one
    app = create_app(served, ServerSettings(key_cache_seconds=0, audit_flush_seconds=0.2))
    url, stop = start_server(app)
    yield Catalog(url, app.state.server, admin, age_only)
    stop()
    served.close()
    writer.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (the system binary; nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()
