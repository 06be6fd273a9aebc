"""Sync from Gold Delta tables into both online stores: full, incremental, replays, deletes."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from featurelake.config import FeatureStoreConfig
from featurelake.errors import MaterializationError
from featurelake.online import (
    SYNC_KIND,
    InMemoryOnlineStore,
    OnlineStore,
    RedisOnlineStore,
    last_sync,
    sync_to_online,
)
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = [pytest.mark.spark, pytest.mark.redis]

T0 = datetime(2024, 3, 1)
SCHEMA = FeatureGroupSchema(
    "customer_stats",
    ["customer_id"],
    [
        {"name": "orders", "type": "bigint"},
        {"name": "spend", "type": "double"},
        {"name": "tier", "type": "string"},
    ],
)


@pytest.fixture
def offline(spark: SparkSession, store_config: FeatureStoreConfig) -> MaterializedFeatureStore:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    return store


@pytest.fixture
def stores(redis_server: Any) -> Any:
    """A fresh in-memory and a fresh Redis store (own namespace), both resolving nothing."""
    made = [
        InMemoryOnlineStore(),
        RedisOnlineStore(redis_server.url, namespace=f"sync{uuid.uuid4().hex[:8]}"),
    ]
    yield made
    for store in made:
        store.close()


def batch(spark: SparkSession, rows: list[tuple[Any, ...]]) -> Any:
    return spark.createDataFrame(
        rows,
        "customer_id bigint, event_timestamp timestamp, orders bigint, spend double, tier string",
    )


def assert_consistent(
    offline: MaterializedFeatureStore, store: OnlineStore, schema: FeatureGroupSchema
) -> int:
    """Every entity's online values and event time equal the offline latest ones."""
    refs = [f"{schema.name}@{schema.version}.*"]
    latest = [r.asDict(recursive=True) for r in offline.get_features(refs).collect()]
    keys = schema.entity_keys
    entities = [{k: r[k] for k in keys} for r in latest]
    vectors = store.get(refs, entities)
    for expected, vector in zip(latest, vectors, strict=True):
        for name in schema.feature_names:
            assert vector.get(name) == expected[name], (expected, vector)
            assert vector.event_time(name) == expected[schema.timestamp_key]
    return len(latest)


def test_full_then_incremental_sync_keeps_online_equal_to_offline(
    spark: SparkSession, offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    rng = random.Random(5)
    first = [
        (c, T0 + timedelta(days=d, seconds=c), rng.randint(0, 50), rng.random(), f"t{c % 3}")
        for c in range(1, 121)
        for d in (0, 1, 2)
    ]
    offline.write_features("customer_stats", batch(spark, first))
    for store in stores:
        result = sync_to_online(store, offline.registry, "customer_stats")
        assert (result.mode, result.rows_written, result.rows_rejected) == ("full", 120, 0)
        assert result.spark_seconds > 0 and result.push_seconds > 0
        assert assert_consistent(offline, store, SCHEMA) == 120

    # Newer events for 1..40, late (older) events for 41..80, new customers 121..130.
    second = (
        [(c, T0 + timedelta(days=5), 1_000 + c, 1.0, "new") for c in range(1, 41)]
        + [(c, T0 - timedelta(days=5), -c, -1.0, "late") for c in range(41, 81)]
        + [(c, T0, c, 0.5, "t9") for c in range(121, 131)]
    )
    written = offline.write_features("customer_stats", batch(spark, second))
    for store in stores:
        result = sync_to_online(store, offline.registry, "customer_stats")
        assert result.mode == "incremental" and result.to_version == written.delta_version
        assert (result.rows_written, result.rows_rejected) == (50, 40)
        assert assert_consistent(offline, store, SCHEMA) == 130
        watermark = last_sync(offline.registry, store, "customer_stats")
        assert watermark is not None and watermark["delta_version"] == written.delta_version
        assert offline.registry.get_object(SYNC_KIND, f"customer_stats@1|{store.target}")
    for store in stores[1:]:
        again = sync_to_online(store, offline.registry, "customer_stats")
        assert again.mode == "up_to_date" and again.rows_written == 0

        # Replaying every change since the table was created changes nothing (the same
        # events are written again, idempotently).
        replay = sync_to_online(store, offline.registry, "customer_stats", since=0)
        assert replay.mode == "incremental" and replay.rows_written == 130
        assert assert_consistent(offline, store, SCHEMA) == 130


def test_rows_removed_offline_are_repaired_online(
    spark: SparkSession, offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    rows = [(c, T0 + timedelta(days=d), d, float(d), "x") for c in (1, 2, 3) for d in (0, 10)]
    offline.write_features("customer_stats", batch(spark, rows))
    for store in stores:
        sync_to_online(store, offline.registry, "customer_stats")
    # A backfill of days 5..15 drops every customer's newest row; customer 4 appears, and
    # customer 3 disappears once its remaining row is overwritten away below.
    offline.backfill(
        "customer_stats",
        batch(
            spark,
            [
                (1, T0 + timedelta(days=6), 6, 6.0, "fixed"),
                (4, T0 + timedelta(days=7), 7, 7.0, "n"),
            ],
        ),
        T0 + timedelta(days=5),
        T0 + timedelta(days=15),
    )
    for store in stores:
        result = sync_to_online(store, offline.registry, "customer_stats")
        assert result.mode == "incremental"
        assert assert_consistent(offline, store, SCHEMA) == 4
        two = store.get("customer_stats.*", [2])[0]
        assert two.get("orders") == 0  # older than what was online, but now the latest
    offline.write_features(
        "customer_stats",
        batch(spark, [(c, T0 + timedelta(days=1), 1, 1.0, "o") for c in (1, 2)]),
        mode="overwrite",
    )
    for store in stores:
        result = sync_to_online(store, offline.registry, "customer_stats")
        assert result.rows_deleted == 2  # customers 3 and 4 have no row left
        assert assert_consistent(offline, store, SCHEMA) == 2
        assert store.get("customer_stats.orders", [3, 4])[0].found("orders") is False


ALL_TYPES = FeatureGroupSchema(
    "typed",
    ["region", "shop_id"],
    [
        {"name": "an_int", "type": "int"},
        {"name": "a_bigint", "type": "bigint"},
        {"name": "a_float", "type": "float"},
        {"name": "a_double", "type": "double"},
        {"name": "a_decimal", "type": "decimal(12,3)"},
        {"name": "a_string", "type": "string"},
        {"name": "a_bool", "type": "boolean"},
        {"name": "a_timestamp", "type": "timestamp"},
        {"name": "a_date", "type": "date"},
        {"name": "an_array", "type": "array<double>"},
        {"name": "a_map", "type": "map<string,bigint>"},
        {"name": "a_struct", "type": "struct<x:int,label:string>"},
    ],
)


def typed_spark_schema() -> T.StructType:
    return T.StructType(
        [
            T.StructField("region", T.StringType()),
            T.StructField("shop_id", T.LongType()),
            T.StructField("event_timestamp", T.TimestampType()),
            *[T.StructField(f.name, f.data_type.to_spark()) for f in ALL_TYPES.features],
        ]
    )


TYPED_ROWS = [
    (
        "eu|west",
        1,
        T0,
        -(2**31),
        2**62,
        1.5,
        0.1 + 0.2,
        Decimal("123456789.125"),
        "ünïcode ✓",
        True,
        datetime(2023, 5, 6, 7, 8, 9, 123456),
        date(2000, 2, 29),
        [1.0, None, -0.0],
        {"a": 1, "b": None},
        (3, "three"),
    ),
    ("us", 2, T0, *([None] * len(ALL_TYPES.features))),
]


def test_every_type_survives_the_sync(
    spark: SparkSession, offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    offline.register_features(ALL_TYPES)
    offline.write_features("typed", spark.createDataFrame(TYPED_ROWS, typed_spark_schema()))
    for store in stores:
        assert sync_to_online(store, offline.registry, "typed").rows_written == 2
        assert assert_consistent(offline, store, ALL_TYPES) == 2
        (first,) = store.get("typed.*", [("eu|west", 1)])
        assert first.get("a_struct") == {"x": 3, "label": "three"}
        assert first.get("a_map") == {"a": 1, "b": None}
        assert type(first.get("a_decimal")) is Decimal and type(first.get("a_float")) is float


def test_tables_without_change_data_feed_fall_back_to_full_syncs(
    spark: SparkSession, store_config: FeatureStoreConfig, stores: list[OnlineStore]
) -> None:
    from pyspark.sql import functions as F

    offline = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    offline.registry.register_group(SCHEMA)
    path = offline.registry.gold_location("customer_stats", 1).path
    assert path is not None

    def append(rows: list[tuple[Any, ...]]) -> None:
        frame = batch(spark, rows).withColumn("_ingested_at", F.current_timestamp())
        frame.write.format("delta").mode("append").save(path)

    append([(1, T0, 1, 1.0, "a"), (2, T0, 2, 2.0, "b")])
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = false)")
    store = stores[1]
    assert sync_to_online(store, offline.registry, "customer_stats").mode == "full"
    append([(1, T0 + timedelta(1), 10, 1.0, "a2")])
    result = sync_to_online(store, offline.registry, "customer_stats")
    assert result.mode == "full" and result.fallback_reason
    assert store.get("customer_stats.orders", [1])[0].get("orders") == 10


def test_syncing_a_group_without_data_says_what_to_do(
    offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    with pytest.raises(MaterializationError, match="write features first"):
        sync_to_online(stores[0], offline.registry, "customer_stats")


def test_gold_rows_read_with_delta_rs_load_the_values_a_sync_loads(
    spark: SparkSession, offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    """`push_latest_arrow` (the Spark-free path of the feature server): the same latest row
    per entity, ties on event time going to the later ingestion, every type intact."""
    from featurelake.gold.delta_reader import open_snapshot, read_arrow
    from featurelake.online import push_latest_arrow

    first_rows = [(1, T0, 1, 1.0, "a"), (2, T0, 2, 2.0, "b")]
    offline.write_features("customer_stats", batch(spark, first_rows))
    later = T0 + timedelta(hours=1)
    offline.write_features(  # the same event time again: the later write wins
        "customer_stats", batch(spark, [(1, T0, 10, 10.0, "c"), (2, later, 20, None, "d")])
    )
    offline.write_features(
        "customer_stats", batch(spark, [(2, T0 - timedelta(days=1), 99, 9.0, "old")])
    )
    offline.register_features(ALL_TYPES)
    for schema in (SCHEMA, ALL_TYPES):
        location = offline.registry.gold_location(schema.name, schema.version)
        if schema is ALL_TYPES:
            offline.write_features("typed", spark.createDataFrame(TYPED_ROWS, typed_spark_schema()))
        rows = read_arrow(open_snapshot(str(location.path)))
        for store in stores:
            written, rejected = push_latest_arrow(store, schema, rows)
            assert (written, rejected) == (2, 0)
            assert assert_consistent(offline, store, schema) == 2
    (first,) = stores[0].get("customer_stats.*", [1])
    assert first.to_dict() == {"orders": 10, "spend": 10.0, "tier": "c"}
    for store in stores:
        (typed,) = store.get("typed.*", [("eu|west", 1)])
        assert typed.get("a_struct") == {"x": 3, "label": "three"}
        assert typed.get("a_map") == {"a": 1, "b": None}
        assert typed.get("a_timestamp") == datetime(2023, 5, 6, 7, 8, 9, 123456)


ENGINES = ("delta-rs", "spark", "executors")


def redis_state(store: RedisOnlineStore) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of a store's namespace, keyed without the namespace."""
    client = store.client
    prefix = f"{store.namespace}:".encode()
    return {
        bytes(key)[len(prefix) :]: client.hgetall(key)
        for key in client.scan_iter(match=f"{store.namespace}:*")
    }


def test_incremental_syncs_of_every_engine_equal_a_full_sync(
    spark: SparkSession, offline: MaterializedFeatureStore, redis_server: Any
) -> None:
    """Appends (newer and late events), a merge updating rows in place and a backfill that
    removes rows, each followed by an incremental sync on every engine: each store ends
    byte for byte where one full sync of the final table puts a fresh store."""
    stores = {
        engine: RedisOnlineStore(redis_server.url, namespace=f"e{uuid.uuid4().hex[:8]}")
        for engine in ENGINES
    }
    memory = InMemoryOnlineStore()
    rng = random.Random(11)

    def sync_all(mode: str) -> None:
        for engine, store in stores.items():
            result = sync_to_online(store, offline.registry, "customer_stats", engine=engine)
            assert (result.mode, result.engine) == (mode, engine)
        assert sync_to_online(memory, offline.registry, "customer_stats").mode == mode

    first = [
        (c, T0 + timedelta(days=d, seconds=c), rng.randint(0, 50), rng.random(), f"t{c % 3}")
        for c in range(1, 61)
        for d in (0, 1, 2)
    ]
    offline.write_features("customer_stats", batch(spark, first))
    sync_all("full")
    later = (
        [(c, T0 + timedelta(days=5), 1_000 + c, 1.0, "new") for c in range(1, 21)]
        + [(c, T0 - timedelta(days=5), -c, -1.0, "late") for c in range(21, 41)]
        + [(c, T0, c, 0.5, "t9") for c in range(61, 71)]
    )
    offline.write_features("customer_stats", batch(spark, later))
    sync_all("incremental")
    # The same keys and event times again: the merge updates those rows in place.
    updates = [(c, T0 + timedelta(days=5), 2_000 + c, 2.0, "merged") for c in range(1, 11)]
    offline.write_features("customer_stats", batch(spark, updates), mode="merge")
    sync_all("incremental")
    # Days 4..6 replaced: customers 1..20 lose their newest row, 11 gets another one.
    offline.backfill(
        "customer_stats",
        batch(spark, [(11, T0 + timedelta(days=4), 11, 11.0, "filled")]),
        T0 + timedelta(days=4),
        T0 + timedelta(days=6),
    )
    sync_all("incremental")

    reference = RedisOnlineStore(redis_server.url, namespace=f"full{uuid.uuid4().hex[:8]}")
    assert sync_to_online(reference, offline.registry, "customer_stats", full=True).mode == "full"
    expected = redis_state(reference)
    assert len(expected) == 70
    for engine, store in stores.items():
        assert redis_state(store) == expected, engine
        assert assert_consistent(offline, store, SCHEMA) == 70
    assert assert_consistent(offline, memory, SCHEMA) == 70
    assert memory.get("customer_stats.tier", [11])[0].get("tier") == "filled"
    for store in [*stores.values(), reference]:
        store.close()


def test_engines_that_cannot_serve_a_store_say_so(
    spark: SparkSession, offline: MaterializedFeatureStore, stores: list[OnlineStore]
) -> None:
    from featurelake.errors import ArgumentConflictError, UnsupportedOperationError

    offline.write_features("customer_stats", batch(spark, [(1, T0, 1, 1.0, "a")]))
    with pytest.raises(UnsupportedOperationError, match="executors cannot write"):
        sync_to_online(stores[0], offline.registry, "customer_stats", engine="executors")
    with pytest.raises(ArgumentConflictError, match="not an engine"):
        sync_to_online(stores[1], offline.registry, "customer_stats", engine="pandas")


def test_auto_reads_small_changes_on_the_driver_and_big_ones_on_spark(
    spark: SparkSession,
    offline: MaterializedFeatureStore,
    stores: list[OnlineStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from featurelake.online import sync as sync_module

    offline.write_features("customer_stats", batch(spark, [(1, T0, 1, 1.0, "a")]))
    for store in stores:
        assert sync_to_online(store, offline.registry, "customer_stats").engine == "delta-rs"
    # Past the driver's budget: Redis is written from the executors, the memory store (which
    # lives in this process) through the driver.
    monkeypatch.setattr(sync_module, "DRIVER_BYTES", 0)
    offline.write_features("customer_stats", batch(spark, [(2, T0, 2, 2.0, "b")]))
    engines = [sync_to_online(s, offline.registry, "customer_stats").engine for s in stores]
    assert engines == ["spark", "executors"]
    for store in stores:
        assert assert_consistent(offline, store, SCHEMA) == 2
