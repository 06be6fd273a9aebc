from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.connect_server import LocalConnectServer
from featurelake.errors import MaterializationError, SchemaValidationError
from featurelake.registry import Lineage
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

T0 = datetime(2024, 1, 1)
COLUMNS = "customer_id bigint, event_timestamp timestamp, age int, segment string, score double"

SCHEMA = FeatureGroupSchema(
    name="customers",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    features=[
        FeatureSchema("age", "int", min_value=0, max_value=130),
        FeatureSchema("segment", "string", allowed_values=["a", "b", "c"]),
        FeatureSchema("score", "double", nullable=False),
    ],
)


def rows(*items: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(items)


def batch(spark: SparkSession, data: list[tuple[Any, ...]], schema: str = COLUMNS) -> DataFrame:
    return spark.createDataFrame(data, schema)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def store(spark: SparkSession, store_config: FeatureStoreConfig) -> MaterializedFeatureStore:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    return store


def table_rows(store: MaterializedFeatureStore, **kwargs: Any) -> list[tuple[Any, ...]]:
    frame = store.read_table("customers", **kwargs).drop("_ingested_at")
    return sorted(tuple(r) for r in frame.collect())


def test_append_overwrite_merge(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    first = store.write_features(
        "customers",
        batch(spark, [(1, day(0), 30, "a", 0.5), (2, day(0), 40, "b", 0.7)]),
        lineage=Lineage(sources=("silver.customers",)),
    )
    assert (first.mode, first.rows_written, first.row_count) == ("append", 2, 2)
    merged = store.write_features(
        "customers",
        batch(spark, [(1, day(0), 31, "a", 0.6), (3, day(1), 50, "c", 0.9)]),
        mode="merge",
    )
    assert merged.rows_written == 2 and merged.delta_version == first.delta_version + 1
    assert table_rows(store) == [
        (1, day(0), 31, "a", 0.6),
        (2, day(0), 40, "b", 0.7),
        (3, day(1), 50, "c", 0.9),
    ]
    store.write_features("customers", batch(spark, [(9, day(5), 20, "a", 1.0)]), mode="overwrite")
    assert table_rows(store) == [(9, day(5), 20, "a", 1.0)]
    state = store.registry.group_state("customers")
    assert (state.writes, state.row_count, state.last_mode) == (3, 1, "overwrite")
    assert state.lineage[0]["sources"] == ["silver.customers"]
    operations = [c.operation for c in store.history("customers")]
    assert operations[:3] == ["WRITE", "MERGE", "WRITE"]


def test_an_empty_batch_writes_nothing(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    first = store.write_features("customers", batch(spark, [(1, day(0), 30, "a", 0.5)]))
    empty = store.write_features("customers", batch(spark, []))
    assert (empty.rows_written, empty.delta_version, empty.row_count) == (
        0,
        first.delta_version,
        1,
    )
    assert table_rows(store) == [(1, day(0), 30, "a", 0.5)]


def test_pandas_batches_are_converted_with_the_schema_types(
    store: MaterializedFeatureStore,
) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00"]).tz_localize(
                "Europe/Berlin"
            ),
            "age": [30, 41],
            "segment": ["a", None],
            "score": [0.1, 0.2],
        }
    )
    result = store.write_features("customers", frame)
    assert result.rows_written == 2
    assert table_rows(store)[0] == (1, datetime(2024, 1, 1, 9, 0), 30, "a", 0.1)
    too_big = frame.assign(age=[30, 2**40])
    with pytest.raises(SchemaValidationError, match="without loss"):
        store.write_features("customers", too_big)


def test_safe_casts_are_applied(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    narrow = "customer_id int, event_timestamp date, age int, segment string, score float"
    store.write_features("customers", batch(spark, [(1, day(0).date(), 3, "a", 0.5)], narrow))
    stored = store.read_table("customers").schema
    assert stored["customer_id"].dataType.simpleString() == "bigint"
    assert stored["score"].dataType.simpleString() == "double"
    assert table_rows(store) == [(1, day(0), 3, "a", 0.5)]


def test_backfill_replaces_exactly_the_range(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    store.write_features(
        "customers",
        batch(spark, [(i, day(d), 20 + d, "a", float(d)) for i in (1, 2) for d in range(5)]),
    )
    result = store.backfill(
        "customers", batch(spark, [(1, day(2), 99, "b", 9.0)]), start=day(1), end=day(3)
    )
    assert result.mode == "backfill" and result.rows_written == 1
    after = table_rows(store)
    untouched = sorted((i, day(d), 20 + d, "a", float(d)) for i in (1, 2) for d in (0, 3, 4))
    assert sorted(r for r in after if not day(1) <= r[1] < day(3)) == untouched
    assert [r for r in after if day(1) <= r[1] < day(3)] == [(1, day(2), 99, "b", 9.0)]
    before = store.history("customers")[0].version
    with pytest.raises(SchemaValidationError, match="backfill range"):
        store.backfill("customers", batch(spark, [(1, day(7), 1, "a", 1.0)]), day(1), day(3))
    with pytest.raises(MaterializationError, match="not a valid time range"):
        store.backfill("customers", batch(spark, [(1, day(2), 1, "a", 1.0)]), day(3), day(1))
    assert store.history("customers")[0].version == before


def test_time_travel_by_version_and_timestamp(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    first = store.write_features("customers", batch(spark, [(1, day(0), 30, "a", 0.5)]))
    stamp = store.history("customers")[0].timestamp
    store.write_features("customers", batch(spark, [(1, day(1), 31, "a", 0.6)]))
    assert table_rows(store, as_of_version=first.delta_version) == [(1, day(0), 30, "a", 0.5)]
    assert table_rows(store, as_of_timestamp=stamp) == [(1, day(0), 30, "a", 0.5)]
    latest = store.get_features("customers.age", [1], as_of_version=first.delta_version)
    assert [tuple(r) for r in latest.collect()] == [(1, day(0), 30)]
    store.restore("customers", first.delta_version)
    assert table_rows(store) == [(1, day(0), 30, "a", 0.5)]


BAD_BATCHES = [
    (
        "missing",
        "customer_id bigint, event_timestamp timestamp, age int, segment string",
        [(1, day(0), 3, "a")],
        "missing column",
    ),
    ("extra", COLUMNS + ", extra int", [(1, day(0), 3, "a", 0.5, 7)], "unexpected column"),
    (
        "lossy type",
        "customer_id bigint, event_timestamp timestamp, age bigint, segment string, score double",
        [(1, day(0), 3, "a", 0.5)],
        "would lose data",
    ),
    (
        "string time",
        "customer_id bigint, event_timestamp string, age int, segment string, score double",
        [(1, "2024-01-01", 3, "a", 0.5)],
        "event_timestamp",
    ),
    ("null key", COLUMNS, [(None, day(0), 3, "a", 0.5)], "entity key must not be null"),
    ("null time", COLUMNS, [(1, None, 3, "a", 0.5)], "event timestamp must not be null"),
    ("above max", COLUMNS, [(1, day(0), 3, "a", 0.5), (2, day(0), 131, "a", 0.5)], "<= 130"),
    ("below min", COLUMNS, [(1, day(0), -1, "a", 0.5)], ">= 0"),
    ("not allowed", COLUMNS, [(1, day(0), 3, "zzz", 0.5)], "allowed_values"),
    ("required null", COLUMNS, [(1, day(0), 3, "a", None)], "must not be null"),
]


@pytest.fixture(scope="module")
def one_row_store(
    spark: SparkSession,
    connect_server: LocalConnectServer | None,
    tmp_path_factory: pytest.TempPathFactory,
    store_paths: Any,
) -> MaterializedFeatureStore:
    """A store whose table holds one row, shared by the bad-batch cases: each one checks that
    its rejected writes left the table's version and rows exactly as they were."""
    config = FeatureStoreConfig(
        spark_remote=connect_server.url if connect_server is not None else None,
        storage_path=store_paths.path(tmp_path_factory.mktemp("bad_batches")),
        storage=store_paths.storage,
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        max_retries=8,
        retry_backoff_ms=20,
        metadata_cache_ttl_seconds=60,
    )
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    store.register_features(SCHEMA)
    store.write_features("customers", batch(spark, [(7, day(0), 1, "a", 1.0)]))
    return store


@pytest.mark.parametrize(
    ("case", "ddl", "data", "message"), BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES]
)
def test_bad_batches_change_nothing(
    spark: SparkSession,
    one_row_store: MaterializedFeatureStore,
    case: str,
    ddl: str,
    data: list[tuple[Any, ...]],
    message: str,
) -> None:
    store = one_row_store
    version = store.history("customers")[0].version
    for mode in ("append", "merge") if case in ("null key", "above max") else ("append",):
        with pytest.raises(SchemaValidationError, match=message) as raised:
            store.write_features("customers", batch(spark, data, ddl), mode=mode)
        assert "Fix:" in str(raised.value)
    assert store.history("customers")[0].version == version
    assert table_rows(store) == [(7, day(0), 1, "a", 1.0)]


def test_row_errors_name_the_rows(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    data = [(1, day(0), 200, "a", 0.5), (2, day(0), 300, "a", 0.5), (3, day(0), 3, "a", 0.5)]
    with pytest.raises(SchemaValidationError) as raised:
        store.write_features("customers", batch(spark, data))
    error = raised.value
    assert error.details["column"] == "age" and error.details["count"] == 2
    assert sorted(r["customer_id"] for r in error.details["rows"]) == [1, 2]


def test_duplicate_key_and_time_in_a_merge_batch(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    store.write_features("customers", batch(spark, [(1, day(0), 1, "a", 1.0)]))
    version = store.history("customers")[0].version
    duplicate = [(1, day(0), 2, "a", 1.0), (1, day(0), 3, "b", 1.0), (2, day(0), 3, "b", 1.0)]
    with pytest.raises(SchemaValidationError, match="unique within a merge batch"):
        store.write_features("customers", batch(spark, duplicate), mode="merge")
    assert store.history("customers")[0].version == version
    with pytest.raises(MaterializationError, match="Unknown write mode 'upsert'"):
        store.write_features("customers", batch(spark, duplicate), mode="upsert")


def test_get_features_latest_per_entity(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    store.write_features(
        "customers",
        batch(
            spark,
            [(1, day(0), 30, "a", 0.1), (1, day(2), 32, None, 0.3), (2, day(1), 40, "b", 0.2)],
        ),
    )
    # Same key and time written later: the later ingestion wins.
    store.write_features("customers", batch(spark, [(2, day(1), 41, "b", 0.25)]))
    latest = store.get_features(["customers.age", "customers.segment"])
    assert sorted(tuple(r) for r in latest.collect()) == [
        (1, day(2), 32, None),
        (2, day(1), 41, "b"),
    ]
    as_of = store.get_features("customers.*", entity_ids=[1], point_in_time=day(1))
    assert [tuple(r) for r in as_of.collect()] == [(1, day(0), 30, "a", 0.1)]
    by_frame = store.get_features("customers.score", pd.DataFrame({"customer_id": [2, 5]}))
    assert [tuple(r) for r in by_frame.collect()] == [(2, day(1), 0.25)]


def test_entity_filter_reaches_the_delta_scan(
    spark: SparkSession, store: MaterializedFeatureStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.write_features("customers", batch(spark, [(1, day(0), 30, "a", 0.1)]))
    capsys.readouterr()
    store.get_features("customers.age", [1, 2]).explain(mode="formatted")
    plan = capsys.readouterr().out
    filters = [
        line for line in plan.splitlines() if line.startswith(("DataFilters", "PushedFilters"))
    ]
    assert any("customer_id" in line and "In" in line for line in filters), plan


def test_compatible_evolution_adds_a_column(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    store.write_features("customers", batch(spark, [(1, day(0), 30, "a", 0.1)]))
    evolved = FeatureGroupSchema(
        name="customers",
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[*SCHEMA.features, FeatureSchema("clv", "double")],
    )
    assert store.register_features(evolved).action == "updated"
    store.write_features(
        "customers",
        batch(spark, [(2, day(1), 40, "b", 0.2, 9.5)], COLUMNS + ", clv double"),
    )
    values = sorted(tuple(r) for r in store.read_table("customers").drop("_ingested_at").collect())
    assert values == [(1, day(0), 30, "a", 0.1, None), (2, day(1), 40, "b", 0.2, 9.5)]


def test_concurrent_writers_lose_nothing(
    spark: SparkSession, store: MaterializedFeatureStore
) -> None:
    errors: list[BaseException] = []

    def merge_rows(start: int) -> None:
        try:
            for round_ in range(3):
                base = start + round_ * 100
                data = [(base + i, day(0), 20, "a", 0.5) for i in range(5)]
                store.write_features("customers", batch(spark, data), mode="merge")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def append_rows(start: int) -> None:
        try:
            for round_ in range(3):
                base = start + round_ * 100
                data = [(base + i, day(1), 30, "b", 0.5) for i in range(5)]
                store.write_features("customers", batch(spark, data), mode="append")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=merge_rows, args=(1_000,)),
        threading.Thread(target=merge_rows, args=(2_000,)),
        threading.Thread(target=append_rows, args=(3_000,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [r.customer_id for r in store.read_table("customers").select("customer_id").collect()]
    expected = [s + r * 100 + i for s in (1_000, 2_000, 3_000) for r in range(3) for i in range(5)]
    assert sorted(ids) == sorted(expected)
    assert store.registry.group_state("customers").writes == 9


def test_health_check(spark: SparkSession, store: MaterializedFeatureStore) -> None:
    report = store.health_check()
    assert report["healthy"] is True and report["groups_without_data"] == ["customers@1"]
    store.write_features("customers", batch(spark, [(1, day(0), 30, "a", 0.1)]))
    assert store.health_check()["groups_without_data"] == []
