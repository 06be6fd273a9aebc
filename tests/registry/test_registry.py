from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureGroupNotFoundError, SchemaValidationError
from featurelake.registry import Lineage, Registry
from featurelake.schema import FeatureGroupSchema, FeatureSchema


@pytest.fixture(params=["delta-rs", "spark"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> FeatureStoreConfig:
    """Every registry test runs on both engines (they share one table layout)."""
    return FeatureStoreConfig(
        storage_path=str(tmp_path / "store"), registry_engine=request.param, retry_backoff_ms=20
    )


def schema(name: str = "users", version: int = 1, **changes: object) -> FeatureGroupSchema:
    fields: dict[str, object] = {
        "name": name,
        "version": version,
        "entity_keys": ["user_id"],
        "features": [FeatureSchema("age", "int"), FeatureSchema("score", "double")],
    }
    fields.update(changes)
    return FeatureGroupSchema(**fields)  # type: ignore[arg-type]


def test_register_is_idempotent_and_versions_are_kept(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    registry = Registry(store_config, spark)
    assert registry.register_group(schema()).action == "created"
    assert registry.register_group(schema()).action == "unchanged"
    updated = schema(description="people", features=[*schema().features, FeatureSchema("x", "int")])
    assert registry.register_group(updated).action == "updated"
    assert registry.register_group(schema(version=2, entity_keys=["uid"])).action == "created"
    assert registry.versions("users") == [1, 2]
    assert registry.get_group("users").version == 2
    assert registry.get_group("users", 1) == updated
    with pytest.raises(SchemaValidationError, match="bump the group version to 2"):
        registry.register_group(schema(features=[FeatureSchema("age", "string")]))
    with pytest.raises(FeatureGroupNotFoundError, match="versions: 1, 2"):
        registry.get_group("users", 3)
    with pytest.raises(FeatureGroupNotFoundError, match="use one of: users"):
        registry.get_group("usres")


def test_a_new_process_sees_everything(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    first = Registry(store_config, spark)
    first.register_group(schema())
    first.record_write(
        schema(),
        mode="append",
        rows_written=10,
        delta_version=1,
        row_count=10,
        duration_seconds=0.5,
        lineage=Lineage(sources=("silver.users",), job="nightly"),
    )
    fresh = Registry(store_config, spark)
    assert fresh.get_group("users") == schema()
    state = fresh.group_state("users")
    assert (state.row_count, state.delta_version, state.writes, state.last_mode) == (
        10,
        1,
        1,
        "append",
    )
    assert state.last_updated is not None
    assert state.lineage[0]["sources"] == ["silver.users"]


def test_cache_serves_reads_until_ttl_or_invalidation(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    cached = Registry(store_config.replace(metadata_cache_ttl_seconds=3600), spark)
    writer = Registry(store_config, spark)
    assert cached.list_groups() == []
    writer.register_group(schema())
    assert cached.list_groups() == []  # served from the cache
    cached.invalidate()
    assert [g.name for g in cached.list_groups()] == ["users"]
    uncached = Registry(store_config.replace(metadata_cache_ttl_seconds=0), spark)
    writer.register_group(schema("orders"))
    assert [g.name for g in uncached.list_groups()] == ["orders", "users"]


def test_concurrent_registrations_from_threads(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> None:
    registries = [Registry(store_config, spark) for _ in range(3)]
    errors: list[BaseException] = []

    def register(index: int) -> None:
        try:
            registries[index].register_group(schema(f"group_{index}"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [g.name for g in Registry(store_config, spark).list_groups()] == [
        "group_0",
        "group_1",
        "group_2",
    ]


def test_claims_are_won_once(spark: SparkSession, store_config: FeatureStoreConfig) -> None:
    registry = Registry(store_config, spark)
    assert registry.put_object_if_absent("run", "slot-1", {"by": "a"}) is True
    assert registry.put_object_if_absent("run", "slot-1", {"by": "b"}) is False
    assert registry.get_object("run", "slot-1") == {"by": "a"}
    registry.delete_object("run", "slot-1")
    assert registry.get_object("run", "slot-1") is None


def test_both_engines_read_the_same_tables(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "shared")
    Registry(FeatureStoreConfig(storage_path=path, registry_engine="spark"), spark).register_group(
        schema()
    )
    rust = Registry(FeatureStoreConfig(storage_path=path, registry_engine="delta-rs"))
    assert rust.get_group("users") == schema()
    rust.register_group(schema("orders"))
    rust.record_write(
        schema(), mode="append", rows_written=1, delta_version=1, row_count=1, duration_seconds=0.1
    )
    assert rust.group_state("users").row_count == 1
    jvm = Registry(FeatureStoreConfig(storage_path=path, registry_engine="spark"), spark)
    assert [g.name for g in jvm.list_groups()] == ["orders", "users"]
    jvm.record_write(
        schema(), mode="merge", rows_written=2, delta_version=2, row_count=3, duration_seconds=0.1
    )
    assert jvm.group_state("users").row_count == 3
    assert rust.group_state("users").last_mode == "merge"
    other = str(tmp_path / "rust_first")
    Registry(FeatureStoreConfig(storage_path=other, registry_engine="delta-rs")).record_write(
        schema(), mode="append", rows_written=1, delta_version=1, row_count=1, duration_seconds=0.1
    )
    spark_side = Registry(FeatureStoreConfig(storage_path=other, registry_engine="spark"), spark)
    spark_side.record_write(
        schema(), mode="append", rows_written=1, delta_version=2, row_count=2, duration_seconds=0.1
    )
    assert [e["row_count"] for e in spark_side.events("write")] == [1, 2]


def test_engine_choice() -> None:
    assert Registry(FeatureStoreConfig(storage_path="/tmp/x")).engine == "delta-rs"
    assert Registry(FeatureStoreConfig(storage_path="dbfs:/x")).engine == "spark"
    assert Registry(FeatureStoreConfig(storage_path="s3://b/x")).engine == "delta-rs"
