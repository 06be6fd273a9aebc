"""Shared fixtures: one Spark session for the whole suite, a clean environment per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.session import get_spark


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's FEATURELAKE_* or SPARK_REMOTE settings."""
    for key in list(os.environ):
        if key.startswith("FEATURELAKE_") and key != "FEATURELAKE_JARS_DIR":
            monkeypatch.delenv(key)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The one local Delta-enabled Spark session of the test run."""
    warehouse = tmp_path_factory.mktemp("warehouse")
    config = FeatureStoreConfig(
        storage_path=str(warehouse),
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        spark_warehouse_dir=str(warehouse),
        spark_conf={"spark.driver.memory": "2g", "spark.sql.adaptive.enabled": "true"},
    )
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def store_config(tmp_path: Path) -> FeatureStoreConfig:
    """A config whose store lives in this test's own tmp folder."""
    return FeatureStoreConfig(
        storage_path=str(tmp_path / "store"),
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        max_retries=8,
        retry_backoff_ms=20,
        metadata_cache_ttl_seconds=60,
    )


# -- Redis ------------------------------------------------------------------------------------

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

REDIS_BINARY = "redis-server"


class RedisServer:
    """A redis-server process on a free loopback port, started for the tests."""

    def __init__(self, process: Any, port: int) -> None:
        self.process = process
        self.host = "127.0.0.1"
        self.port = port
        self.url = f"redis://{self.host}:{port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(workdir: Path) -> RedisServer:
    import shutil
    import subprocess
    import time

    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    for _ in range(5):
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(process, port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                import redis

                client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
                if client.ping():
                    client.close()
                    return server
            except Exception:
                time.sleep(0.05)
        server.stop()  # the port was taken in between, or the server did not come up
    raise RuntimeError("redis-server did not start on a free loopback port")


@pytest.fixture(scope="session")
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], RedisServer]]:
    """Start extra redis-servers (e.g. to kill one in a test); all stop at the end."""
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = _start_redis(tmp_path_factory.mktemp("redis"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(redis_server_factory: Callable[[], RedisServer]) -> RedisServer:
    """The one shared redis-server of the test run (127.0.0.1, free port, no persistence)."""
    return redis_server_factory()
