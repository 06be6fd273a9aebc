from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureStoreError, MaterializationError, VirtualizationQueryError
from featurelake.gold import delta_ops
from featurelake.plan.routing import Strategy
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.hybrid import AUTO_MATERIALIZE, HybridFeatureStore
from featurelake.times import utc_now

T0 = datetime(2024, 1, 1)
VIEW = "hy_silver"
QUERY = f"SELECT customer_id, ts AS event_timestamp, amount FROM {VIEW}"
CUSTOMERS, DAYS, FILES = 40, 5, 4  # 200 rows; each file holds 10 customers (50 rows)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def schema(name: str, freshness: str | None = None) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[FeatureSchema("amount", "double")],
        freshness=freshness,
    )


@dataclass
class Env:
    spark: SparkSession
    config: FeatureStoreConfig
    store: HybridFeatureStore

    def store_with(self, **changes: Any) -> HybridFeatureStore:
        return HybridFeatureStore(StoreContext.of(self.config.replace(**changes), self.spark))


@pytest.fixture(scope="module")
def env(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("hybrid")
    silver = spark.createDataFrame(
        [(c, day(d), float(c * 100 + d)) for c in range(1, CUSTOMERS + 1) for d in range(DAYS)],
        "customer_id bigint, ts timestamp, amount double",
    )
    path = str(root / "silver")
    per_file = CUSTOMERS // FILES
    for first in range(1, CUSTOMERS + 1, per_file):  # one file per range of customers
        part = silver.where(silver.customer_id.between(first, first + per_file - 1))
        part.coalesce(1).write.format("delta").mode("append").save(path)
    spark.read.format("delta").load(path).createOrReplaceTempView(VIEW)
    config = FeatureStoreConfig(
        storage_path=str(root / "store"),
        hybrid_threshold_rows=1_000,
        metadata_cache_ttl_seconds=60,
    )
    store = HybridFeatureStore(StoreContext.of(config, spark))
    for name, freshness in (("stale", "1s"), ("warm", "1h"), ("hot", None)):
        store.define_virtual_features(schema(name, freshness), QUERY)
    for name in ("auto", "counted"):
        store.define_virtual_features(schema(name), QUERY)
    store.register_features(schema("nodef"))
    store.materialize("stale")
    store.materialize("warm")
    last = store.registry.group_state("stale").last_updated
    assert last is not None
    time.sleep(max(0.0, 1.2 - (utc_now() - last).total_seconds()))  # "stale" is now stale
    yield Env(spark, config, store)
    spark.catalog.dropTempView(VIEW)


def rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in frame.collect())


def test_explain_prunes_files_from_log_statistics_without_jobs(env: Env, spark_jobs: Any) -> None:
    before = spark_jobs.ids()
    hot = env.store.explain("hot.*", entity_ids=[1, 2])["hot"]
    assert (hot.strategy, hot.estimate_source) == (Strategy.VIRTUAL, "sources")
    assert (hot.estimated_rows, hot.files_total, hot.files_after_pruning) == (50, FILES, 1)
    assert hot.reason == "there is no Gold table; 50 estimated rows < threshold 1,000: computing it"
    assert hot.gold_exists is False and hot.threshold == 1_000
    everything = env.store.explain("hot.amount")["hot"]
    assert (everything.estimated_rows, everything.files_after_pruning) == (200, FILES)
    spread = env.store.explain("hot.amount", [1, 35])["hot"]
    assert (spread.estimated_rows, spread.files_after_pruning) == (100, 2)
    # The query renames `ts`: sources are pruned on same-named columns only (the keys here).
    early = env.store.explain("hot.amount", [1], point_in_time=day(-1))["hot"]
    assert (early.estimated_rows, early.files_after_pruning) == (50, 1)
    entities = pd.DataFrame({"customer_id": [11, 12], "event_timestamp": [day(1), day(3)]})
    assert env.store.explain("hot.amount", entities)["hot"].estimated_rows == 50

    warm = env.store.explain("warm.amount", [1])["warm"]
    assert (warm.strategy, warm.fresh, warm.gold_exists) == (Strategy.MATERIALIZED, True, True)
    assert "the Gold table is fresh" in warm.reason and "freshness 1h" in warm.reason
    assert warm.gold_estimate is not None and warm.gold_estimate.rows_total == 200
    before_events = env.store.explain("warm.amount", [1], point_in_time=day(-1))["warm"]
    assert before_events.gold_estimate is not None
    assert (before_events.gold_estimate.rows, before_events.gold_estimate.files) == (0, 0)
    stale = env.store.explain("stale.amount", [1])["stale"]
    assert (stale.strategy, stale.fresh) == (Strategy.VIRTUAL, False)
    assert "the Gold table is stale" in stale.reason and "freshness 1s" in stale.reason
    nodef = env.store.explain("nodef.amount")["nodef"]
    assert (nodef.strategy, nodef.reason) == (
        Strategy.MATERIALIZED,
        "the group has no virtual definition",
    )
    assert spark_jobs.ids() == before  # estimates read Delta logs, never the data


def test_routing_flips_exactly_at_the_threshold(env: Env) -> None:
    at = env.store_with(hybrid_threshold_rows=50)
    above = env.store_with(hybrid_threshold_rows=51)
    assert at.explain("stale.amount", [1, 2])["stale"].strategy is Strategy.MATERIALIZED
    assert above.explain("stale.amount", [1, 2])["stale"].strategy is Strategy.VIRTUAL
    assert "reading the stale table" in at.explain("stale.amount", [1, 2])["stale"].reason
    expected = [(1, day(4), 104.0), (2, day(4), 204.0)]
    assert rows(at.get_features("stale.amount", [1, 2])) == expected
    assert rows(above.get_features("stale.amount", [1, 2])) == expected
    assert [m.strategy for m in at.metrics() + above.metrics()] == ["materialized", "virtual"]
    assert at.metrics()[0].estimated_rows == 50 and at.metrics()[0].threshold == 50
    # No Gold table to fall back to and auto-materialization off: computed anyway.
    hot = at.explain("hot.amount", [1, 2])["hot"]
    assert hot.strategy is Strategy.VIRTUAL and "computing it anyway" in hot.reason


def test_strategy_override_and_groups_read_differently_in_one_request(env: Env) -> None:
    store = env.store_with()
    mixed = store.get_features(["hot.amount", "warm.amount"], [1, 15], point_in_time=day(2))
    assert mixed.columns == ["customer_id", "hot__amount", "warm__amount"]
    assert rows(mixed) == [(1, 102.0, 102.0), (15, 1502.0, 1502.0)]
    assert [(m.group, m.strategy) for m in store.metrics()] == [
        ("hot", "virtual"),
        ("warm", "materialized"),
    ]
    forced = store.explain(["hot.amount", "warm.amount"], strategy={"warm": "virtual"})
    assert forced["warm"].strategy is Strategy.VIRTUAL and forced["warm"].requested
    assert forced["hot"].requested is None
    with pytest.raises(MaterializationError, match="has no data yet"):
        store.get_features("hot.amount", [1], strategy="materialized")
    with pytest.raises(VirtualizationQueryError, match="no virtual definition"):
        store.get_features("nodef.amount", strategy="virtual")
    with pytest.raises(FeatureStoreError, match="not a read strategy"):
        store.explain("hot.amount", strategy="fastest")


def test_point_in_time_reads_are_routed_and_recorded(env: Env) -> None:
    entities = pd.DataFrame(
        {"customer_id": [1, 2, 40], "event_timestamp": [day(0.5), day(3), day(10)], "y": [0, 1, 0]}
    )
    built = env.store.get_training_set(entities, ["hot.amount", "warm.amount"])
    assert built.manifest.virtual_groups == ("hot@1",)
    assert [t.group for t in built.manifest.tables] == ["warm"]
    assert rows(built.df) == [
        (1, day(0.5), 0, 100.0, 100.0),
        (2, day(3), 1, 203.0, 203.0),
        (40, day(10), 0, 4004.0, 4004.0),
    ]
    virtual = env.store.get_historical_features(
        entities, ["hot.amount", "warm.amount"], strategy="virtual"
    )
    assert rows(virtual) == rows(built.df)
    assert rows(env.store.rebuild(built.manifest, entities).df) == rows(built.df)


def test_auto_materialize_happens_once_under_concurrent_readers(env: Env) -> None:
    readers = [
        env.store_with(auto_materialize_on_read=True, hybrid_threshold_rows=10) for _ in range(2)
    ]
    assert readers[0].explain("auto.amount", [1, 2])["auto"].auto_materialize
    barrier = threading.Barrier(2)
    results: list[list[tuple[Any, ...]]] = []
    errors: list[BaseException] = []

    def read(store: HybridFeatureStore) -> None:
        try:
            barrier.wait()
            results.append(rows(store.get_features("auto.amount", [1, 2])))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=read, args=(store,)) for store in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [[(1, day(4), 104.0), (2, day(4), 204.0)]] * 2
    metrics = readers[0].metrics() + readers[1].metrics()
    assert sum(m.auto_materialized for m in metrics) == 1
    assert [m.actual_rows for m in metrics if m.auto_materialized] == [200]
    location = env.store.materialized.location("auto")
    writes = [c for c in delta_ops.history(env.spark, location) if c.operation == "WRITE"]
    assert len(writes) == 1
    assert env.store.registry.group_state("auto").writes == 1
    env.store.registry.invalidate()
    claims = env.store.registry.list_objects(AUTO_MATERIALIZE)
    assert [c["status"] for k, c in claims.items() if k.startswith("auto@1:")] == ["done"]
    after = readers[1].explain("auto.amount", [1, 2])["auto"]
    assert after.strategy is Strategy.MATERIALIZED and after.fresh


def test_frequent_virtual_reads_trigger_materialization(env: Env) -> None:
    store = env.store_with(
        auto_materialize_on_read=True, auto_materialize_after_reads=2, hybrid_threshold_rows=10**9
    )
    for _ in range(4):
        assert rows(store.get_features("counted.amount", [3])) == [(3, day(4), 304.0)]
    assert [(m.strategy, m.auto_materialized) for m in store.metrics()] == [
        ("virtual", False),
        ("virtual", False),
        ("materialized", True),
        ("materialized", False),
    ]
    assert "read virtually 2 times" in store.metrics()[2].reason


def test_metrics_persist_in_the_registry(env: Env) -> None:
    store = env.store_with()
    store.get_features("hot.amount", [7])
    mine = store.metrics()[-1]
    assert (mine.operation, mine.group, mine.strategy) == ("get_features", "hot", "virtual")
    assert mine.estimated_rows == 50 and mine.duration_seconds > 0
    store.flush_metrics()  # router metrics are committed in batches (and on close)
    persisted = HybridFeatureStore(StoreContext.of(env.config, env.spark)).metrics(persisted=True)
    assert mine in persisted
