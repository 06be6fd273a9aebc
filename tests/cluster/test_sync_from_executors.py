"""A sync writing into Redis from the cluster's executors: Python workers of executor
processes of their own open the store and run the compare-and-set (cluster mode only)."""

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
SCHEMA = FeatureGroupSchema("cluster_stats", ["item_id"], [{"name": "sold", "type": "bigint"}])


def test_executors_of_their_own_write_the_latest_rows(
    spark: SparkSession, store_config: FeatureStoreConfig, redis_server: Any
) -> None:
    config = store_config.replace(
        enable_online_store=True, online_backend=OnlineBackend.REDIS, online_url=redis_server.url
    )
    store = FeatureStore(config, spark)
    store.register_features(SCHEMA)
    rows = [(i, T0 + timedelta(hours=h), i * h) for i in range(500) for h in (1, 2)]
    frame = spark.createDataFrame(rows, "item_id bigint, event_timestamp timestamp, sold bigint")
    store.write_features("cluster_stats", frame.repartition(4))
    result = sync_to_online(store.online, store.registry, "cluster_stats", engine="executors")
    assert (result.engine, result.rows_written, result.rows_rejected) == ("executors", 500, 0)
    assert store.online.stats()["rows_written"] == 500
    vectors = store.get_online_features(["cluster_stats.sold"], list(range(500)))
    assert [v.get("sold") for v in vectors] == [i * 2 for i in range(500)]
    store.close()
