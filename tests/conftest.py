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
