"""A sync into Redis through a FeatureStore's own Spark session on every engine: delta-rs on
the driver, Spark writing through the driver, and Spark writing from its executors (their
Python workers: in this process's local session, or on the Spark Connect server)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.online import sync_to_online
from featurelake.schema import FeatureGroupSchema

pytestmark = [pytest.mark.spark, pytest.mark.redis]

T0 = datetime(2024, 5, 1)
SCHEMA = FeatureGroupSchema(
    "engine_stats",
    ["shop", "item_id"],
    [
        {"name": "sold", "type": "bigint"},
        {"name": "price", "type": "double"},
        {"name": "label", "type": "string"},
        {"name": "seen_at", "type": "timestamp"},
    ],
)
COLUMNS = "shop string, item_id bigint, event_timestamp timestamp, sold bigint, price double, "
COLUMNS += "label string, seen_at timestamp"


@pytest.mark.parametrize("engine", ["delta-rs", "spark", "executors"])
def test_every_engine_syncs_the_latest_rows(
    spark: SparkSession, store_config: FeatureStoreConfig, redis_server: Any, engine: str
) -> None:
    config = store_config.replace(
        enable_online_store=True, online_backend=OnlineBackend.REDIS, online_url=redis_server.url
    )
    store = FeatureStore(config, spark)
    store.register_features(SCHEMA)
    rows = [
        (f"s|{s}", i, T0 + timedelta(hours=h), i * h, i / 3, f"v{h}", T0 - timedelta(days=i))
        for s in range(3)
        for i in range(40)
        for h in (1, 2)
    ]
    store.write_features("engine_stats", spark.createDataFrame(rows, COLUMNS))

    def check(expected: dict[tuple[str, int], tuple[Any, ...]]) -> None:
        entities = sorted(expected)
        vectors = store.get_online_features(["engine_stats.*"], entities)
        for entity, vector in zip(entities, vectors, strict=True):
            assert tuple(vector.to_list()) == expected[entity][3:], entity
            assert vector.event_time("sold") == expected[entity][2]

    first = sync_to_online(store.online, store.registry, "engine_stats", engine=engine)
    assert (first.mode, first.engine, first.rows_written) == ("full", engine, 120)
    check({(r[0], r[1]): r for r in rows if r[2] == T0 + timedelta(hours=2)})

    newer = [(f"s|{s}", 5 + s, T0 + timedelta(hours=3), -s, None, "new", T0) for s in range(3)]
    older = [("s|1", i, T0, 99, 9.9, "old", T0) for i in range(10, 20)]
    store.write_features("engine_stats", spark.createDataFrame(newer + older, COLUMNS))
    second = sync_to_online(store.online, store.registry, "engine_stats", engine=engine)
    assert (second.mode, second.engine) == ("incremental", engine)
    assert (second.rows_written, second.rows_rejected) == (3, 10)
    latest = {(r[0], r[1]): r for r in rows if r[2] == T0 + timedelta(hours=2)}
    latest.update({(r[0], r[1]): r for r in newer})
    check(latest)
    store.close()
