"""Virtual SQL is a query and nothing else: no file reads in DuckDB, no statements in Spark;
and the hybrid store's read log is bounded, its registry events batched."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.errors import VirtualizationQueryError
from featurelake.plan.read_plan import ReadRequest
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.hybrid import ROUTER_METRICS, HybridFeatureStore

pytestmark = [pytest.mark.spark]

SCHEMA = FeatureGroupSchema(
    "vq", ["id"], [{"name": "x", "type": "string"}], entity_key_types={"id": "bigint"}
)
ROWS = pa.table(
    {
        "id": pa.array([1, 2], pa.int64()),
        "event_timestamp": pa.array(
            [datetime(2024, 1, 1), datetime(2024, 1, 2)], pa.timestamp("us")
        ),
        "x": ["a", "b"],
    }
)


def _store(tmp_path: Path, spark: SparkSession, **options: object) -> HybridFeatureStore:
    config = FeatureStoreConfig(
        storage_path=str(tmp_path / "store"), metadata_cache_ttl_seconds=0, **options
    )
    return HybridFeatureStore(StoreContext.of(config, spark))


def test_duckdb_virtual_queries_cannot_read_files(tmp_path: Path, spark: SparkSession) -> None:
    inside = tmp_path / "store" / "sources" / "events"
    outside = tmp_path / "elsewhere" / "events"
    for path in (inside, outside):
        write_deltalake(str(path), ROWS)
    store = _store(tmp_path, spark)
    leak = (
        f"SELECT e.id, e.event_timestamp, f.content AS x "
        f"FROM delta_scan('{inside}') e, read_text('/etc/hostname') f"
    )
    with pytest.raises(VirtualizationQueryError) as read_text:
        store.define_virtual_features(SCHEMA, leak, engine="duckdb")
    assert read_text.value.details["condition"] == "EXTERNAL_ACCESS_DENIED"
    assert "vq" not in [g.name for g in store.registry.list_groups()]  # nothing defined

    elsewhere = f"SELECT id, event_timestamp, x FROM delta_scan('{outside}')"
    with pytest.raises(VirtualizationQueryError) as foreign:
        store.define_virtual_features(SCHEMA, elsewhere, engine="duckdb")
    assert foreign.value.details["condition"] == "SOURCE_PATH_NOT_ALLOWED"
    assert "virtual_source_paths" in str(foreign.value.fix)

    fine = f"SELECT id, event_timestamp, x FROM delta_scan('{inside}')"
    store.define_virtual_features(SCHEMA, fine, engine="duckdb")
    allowed = _store(tmp_path, spark, virtual_source_paths=(str(outside.parent),))
    allowed.define_virtual_features(SCHEMA, elsewhere, engine="duckdb")
    rows = allowed.latest_pandas(ReadRequest.latest("vq.x"), [1, 2], engine="duckdb")
    assert sorted(rows["x"]) == ["a", "b"]


def test_a_spark_query_cannot_append_a_statement(tmp_path: Path, spark: SparkSession) -> None:
    source = tmp_path / "store" / "sources" / "events"
    write_deltalake(str(source), ROWS)
    target = tmp_path / "written"
    store = _store(tmp_path, spark)
    injected = (
        f"SELECT id, event_timestamp, x FROM delta.`{source}`) "
        f"INSERT OVERWRITE DIRECTORY '{target}' USING parquet "
        f"SELECT id, event_timestamp, x FROM delta.`{source}` --"
    )
    statement = f"INSERT OVERWRITE DIRECTORY '{target}' USING parquet SELECT 1 AS id"
    second = f"SELECT id, event_timestamp, x FROM delta.`{source}`; DROP TABLE t"
    for text in (injected, statement, second):
        with pytest.raises(VirtualizationQueryError) as refused:
            store.define_virtual_features(SCHEMA, text)
        assert refused.value.details["condition"] == "NOT_A_SINGLE_QUERY", text
    assert not target.exists()
    quoted = (
        f"SELECT id, event_timestamp, CONCAT(x, ')') AS x FROM delta.`{source}` -- a ) in a comment"
    )
    store.define_virtual_features(SCHEMA, quoted)  # parentheses in text and comments are fine


def test_the_read_log_is_bounded_and_its_events_batched(
    tmp_path: Path, spark: SparkSession
) -> None:
    source = tmp_path / "store" / "sources" / "events"
    write_deltalake(str(source), ROWS)
    config = FeatureStoreConfig(storage_path=str(tmp_path / "store"), metadata_cache_ttl_seconds=0)
    # (no flush by age: on a loaded machine 25 reads may take longer than the default age)
    store = HybridFeatureStore(
        StoreContext.of(config, spark),
        read_log_size=5,
        metrics_batch=10,
        metrics_flush_seconds=3600,
    )
    store.define_virtual_features(
        SCHEMA, f"SELECT id, event_timestamp, x FROM delta_scan('{source}')", engine="duckdb"
    )
    for _ in range(25):
        store.latest_pandas(ReadRequest.latest("vq.x"), [1], engine="duckdb")
    assert len(store.metrics()) == 5  # the newest five reads
    saved = Registry(config).events(ROUTER_METRICS)
    assert len(saved) == 20  # two batches of ten committed, five waiting
    store.flush_metrics()
    assert len(Registry(config).events(ROUTER_METRICS)) == 25
