"""`query_timeout_seconds` is real: a virtual query running longer is cancelled on its engine
(Spark interrupts its jobs, DuckDB its connection) with a QueryTimeoutError, and the store
answers the next read as before."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.errors import QueryTimeoutError, VirtualizationQueryError
from featurelake.schema import FeatureGroupSchema, FeatureSchema

pytestmark = pytest.mark.spark

T0 = datetime(2024, 5, 1)
# long enough for the quick queries on a loaded machine over Connect, far below the slow ones
TIMEOUT = 15.0
SLOW_ROWS = 3_000_000_000  # hashing them takes minutes on any engine here


def group(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[FeatureSchema("amount", "double")],
    )


def silver(spark: SparkSession, config: FeatureStoreConfig) -> str:
    """A small Delta table of events under the store (what the virtual queries read)."""
    path = f"{config.storage_path}/silver/events"
    rows = [(1, T0, 10.0), (2, T0, 20.0)]
    frame = spark.createDataFrame(
        rows, "customer_id bigint, event_timestamp timestamp, amount double"
    )
    frame.write.format("delta").save(path)
    return path


def test_a_slow_spark_query_is_cancelled_and_the_store_goes_on(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    config = store_config.replace(query_timeout_seconds=TIMEOUT)
    store = FeatureStore(config, spark)
    path = silver(spark, config)
    store.register_features(group("slow"))
    store.register_features(group("quick"))
    # each row sleeps ten minutes in its task (an interruptible wait, as a scan or a shuffle is)
    slow = (
        "SELECT customer_id, event_timestamp, amount + 0 * length(reflect('java.lang.Thread', "
        f"'sleep', CAST(600000 AS BIGINT))) AS amount FROM delta.`{path}`"
    )
    store.define_virtual_features("slow", slow)
    store.define_virtual_features(
        "quick", f"SELECT customer_id, event_timestamp, amount FROM delta.`{path}`"
    )
    # (raised only when the deadline fired and the engine's work then failed: a query that
    # ran to its end, minutes later, would return rows instead)
    with pytest.raises(QueryTimeoutError) as caught:
        store.get_features("slow.*", [1, 2], strategy="virtual", to_pandas=True, engine="spark")
    assert isinstance(caught.value, VirtualizationQueryError)  # caught where those are
    assert "query_timeout_seconds=15" in str(caught.value) and "'slow'" in str(caught.value)
    assert caught.value.fix and "materialize" in caught.value.fix
    with pytest.raises(QueryTimeoutError):
        store.materialize("slow")  # the write of its rows too; nothing is committed
    assert store.read_table("slow").count() == 0
    quick = store.get_features("quick.*", [1, 2], strategy="virtual", to_pandas=True)
    assert sorted(quick["amount"]) == [10.0, 20.0]
    # without a limit the same machinery stays out of the way
    unlimited = FeatureStore(config.replace(query_timeout_seconds=None), spark)
    assert len(unlimited.get_features("quick.*", [1], strategy="virtual", to_pandas=True)) == 1


def test_a_slow_duckdb_query_is_cancelled(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    pytest.importorskip("duckdb")
    config = store_config.replace(query_timeout_seconds=TIMEOUT)
    store = FeatureStore(config, spark)
    path = silver(spark, config)
    store.register_features(group("slow_duck"))
    slow = (
        "SELECT customer_id, event_timestamp, amount + 0 * length((SELECT max(sha256(CAST(i "
        f"AS VARCHAR))) FROM range(0, {SLOW_ROWS}) t(i))) AS amount FROM delta_scan('{path}')"
    )
    store.define_virtual_features("slow_duck", slow, engine="duckdb")
    store.register_features(group("quick_duck"))
    store.define_virtual_features(
        "quick_duck",
        f"SELECT customer_id, event_timestamp, amount FROM delta_scan('{path}')",
        engine="duckdb",
    )
    with pytest.raises(QueryTimeoutError) as caught:
        store.get_features("slow_duck.*", [1], strategy="virtual", to_pandas=True, engine="duckdb")
    assert "'slow_duck'" in str(caught.value)
    # the interrupted connection answers the next query
    entities = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0, T0]})
    rows = store.get_historical_features(
        entities, "quick_duck.*", strategy="virtual", engine="duckdb", to_pandas=True
    )
    assert list(rows["amount"]) == [10.0, 20.0]
