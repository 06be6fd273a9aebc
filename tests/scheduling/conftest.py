"""Fixtures of the scheduling tests: a Silver Delta source and a group materialized from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 3, 1)
SILVER_COLUMNS = "id BIGINT, ts TIMESTAMP, amount DOUBLE, country STRING"
SPEND_QUERY = (
    "SELECT id AS customer_id, ts AS event_timestamp, amount * 2 AS spend, country "
    "FROM {source} WHERE amount >= 0"
)


def silver_rows(ids: range | list[int], *, amount: float = 1.0) -> list[tuple[Any, ...]]:
    """Silver rows: id, event time (T0 + id minutes), amount (id * `amount`), country."""
    return [(i, T0 + timedelta(minutes=i), amount * i, "FR" if i % 2 else "DE") for i in ids]


def gold_rows(frame: DataFrame, schema: FeatureGroupSchema) -> list[tuple[Any, ...]]:
    """The data columns of a Gold table, sorted (no `_ingested_at`)."""
    return sorted(tuple(r) for r in frame.select(*schema.columns).collect())


def spend_group(source: dict[str, Any] | str | None, **extra: Any) -> FeatureGroupSchema:
    data: dict[str, Any] = {
        "name": extra.pop("name", "spend"),
        "entity_keys": ["customer_id"],
        "timestamp_key": "event_timestamp",
        "features": [
            {"name": "spend", "type": "double"},
            {"name": "country", "type": "string"},
        ],
        **extra,
    }
    if source is not None:
        data["source"] = source
    return FeatureGroupSchema.from_dict(data)


@pytest.fixture
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> SimpleNamespace:
    """Helpers: `silver(rows)` creates a CDF-enabled Delta table, `rows`, `group`, `gold`.

    Spark starts only when a test creates a table.
    """

    def silver(rows: list[tuple[Any, ...]], name: str = "silver") -> str:
        spark: SparkSession = request.getfixturevalue("spark")
        path = tmp_path / name
        spark.createDataFrame(rows, SILVER_COLUMNS).write.format("delta").option(
            "delta.enableChangeDataFeed", "true"
        ).save(str(path))
        return str(path)

    return SimpleNamespace(
        silver=silver, rows=silver_rows, group=spend_group, gold=gold_rows, query=SPEND_QUERY, t0=T0
    )


@pytest.fixture
def make_store(
    spark: SparkSession, tmp_path: Path, store_paths: Any
) -> Callable[..., MaterializedFeatureStore]:
    """Stores with their own storage paths under this test's tmp folder (or the run's S3
    bucket in s3 mode)."""

    def make(name: str = "store", **options: Any) -> MaterializedFeatureStore:
        config = FeatureStoreConfig(
            storage_path=store_paths.path(tmp_path / name),
            storage=store_paths.storage,
            spark_master="local[2]",
            spark_shuffle_partitions=2,
            max_retries=8,
            retry_backoff_ms=20,
            metadata_cache_ttl_seconds=60,
            **options,
        )
        return MaterializedFeatureStore(StoreContext.of(config, spark))

    return make
