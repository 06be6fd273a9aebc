"""Incremental materialization from a Delta source through its Change Data Feed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession

from featurelake.errors import MaterializationError, SchemaValidationError
from featurelake.gold import delta_ops
from featurelake.quality.freshness import MATERIALIZATION_RUN
from featurelake.scheduling import materialize_from_source, watermark
from featurelake.scheduling.incremental import WATERMARK
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark

Stores = Callable[..., MaterializedFeatureStore]


def _gold_version(store: MaterializedFeatureStore, group: str) -> int:
    return delta_ops.current_version(store.spark, store.location(group))


def test_incremental_after_update_delete_insert_equals_full_rebuild(
    spark: SparkSession, kit: SimpleNamespace, make_store: Stores
) -> None:
    path = kit.silver(kit.rows(range(20)))
    schema = kit.group({"table": path, "query": kit.query})
    store = make_store("incremental")
    store.register_features(schema)

    first = materialize_from_source(store, "spend")
    assert first.mode == "full" and first.rows_written == 20
    assert watermark(store, "spend")["source_version"] == 0

    # One MERGE commit: a changed value (3), a row now filtered out by the query (4), a new
    # event time, so a new Gold key (7), deletes (5, 6), inserts (20-24); then a commit that
    # changes rows inserted in the same range (21 updated, 22 deleted).
    changes = spark.createDataFrame(
        [
            (3, "set", 500.0),
            (4, "set", -1.0),
            (7, "shift", None),
            (5, "del", None),
            (6, "del", None),
        ]
        + [(i, "new", float(i)) for i in range(20, 25)],
        "id BIGINT, op STRING, value DOUBLE",
    )
    changes.createOrReplaceTempView("silver_changes")
    table = f"delta.`{path}`"
    spark.sql(
        f"MERGE INTO {table} t USING silver_changes s ON t.id = s.id "
        "WHEN MATCHED AND s.op = 'del' THEN DELETE "
        "WHEN MATCHED AND s.op = 'set' THEN UPDATE SET amount = s.value "
        "WHEN MATCHED AND s.op = 'shift' THEN UPDATE SET ts = t.ts + INTERVAL 1 DAYS "
        "WHEN NOT MATCHED THEN INSERT (id, ts, amount, country) "
        f"VALUES (s.id, TIMESTAMP '2024-03-01 00:00:00' + make_interval(0, 0, 0, 0, 0, "
        "CAST(s.id AS INT)), s.value, IF(s.id % 2 = 1, 'FR', 'DE'))"
    )
    spark.sql(
        f"MERGE INTO {table} t USING (SELECT 21L AS id UNION ALL SELECT 22L) s ON t.id = s.id "
        "WHEN MATCHED AND s.id = 21 THEN UPDATE SET amount = 7 "
        "WHEN MATCHED THEN DELETE"
    )
    spark.catalog.dropTempView("silver_changes")

    second = materialize_from_source(store, "spend")
    assert second.mode == "incremental"
    assert (second.from_version, second.to_version) == (1, 2)

    rebuilt = make_store("rebuilt")
    rebuilt.register_features(schema)
    materialize_from_source(rebuilt, "spend", full=True)
    expected = kit.gold(rebuilt.read_table("spend"), schema)
    assert kit.gold(store.read_table("spend"), schema) == expected
    by_id = {row[0]: row for row in expected}
    assert by_id[3][2] == 1000.0 and 4 not in by_id and 5 not in by_id and 22 not in by_id
    assert by_id[7][1] == kit.t0 + timedelta(days=1, minutes=7) and by_id[21][2] == 14.0

    # Nothing new: no Gold commit. Re-running the same range (watermark put back, as after a
    # crash between the Gold commit and the watermark) gives the same table.
    version = _gold_version(store, "spend")
    assert materialize_from_source(store, "spend").mode == "up_to_date"
    assert _gold_version(store, "spend") == version
    mark = watermark(store, "spend")
    store.registry.put_object(WATERMARK, "spend@1", {**mark, "source_version": 0})
    again = materialize_from_source(store, "spend")
    assert again.mode == "incremental" and again.from_version == 1
    assert kit.gold(store.read_table("spend"), schema) == expected
    runs = store.registry.events(MATERIALIZATION_RUN, "spend@1")
    assert [r["mode"] for r in runs] == ["full", "incremental", "up_to_date", "incremental"]
    assert all(r["outcome"] == "succeeded" for r in runs)


def test_failed_run_leaves_watermark_and_table(
    spark: SparkSession, kit: SimpleNamespace, make_store: Stores
) -> None:
    path = kit.silver(kit.rows(range(5)))
    store = make_store("store")
    store.register_features(kit.group({"table": path, "query": kit.query}))
    materialize_from_source(store, "spend")
    before = (watermark(store, "spend"), _gold_version(store, "spend"))

    spark.createDataFrame(
        [(None, kit.t0, 1.0, "FR")], "id BIGINT, ts TIMESTAMP, amount DOUBLE, country STRING"
    ).write.format("delta").mode("append").save(path)
    with pytest.raises(SchemaValidationError, match="customer_id"):
        materialize_from_source(store, "spend")
    assert (watermark(store, "spend"), _gold_version(store, "spend")) == before
    last = store.registry.events(MATERIALIZATION_RUN, "spend@1")[-1]
    assert last["outcome"] == "failed" and "customer_id" in last["error"]


def test_python_transform_and_query_only_source(
    spark: SparkSession,
    kit: SimpleNamespace,
    make_store: Stores,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = tmp_path / "spend_transforms.py"
    module.write_text(
        "from pyspark.sql import functions as F\n"
        "def rows(df):\n"
        "    return df.select(F.col('id').alias('customer_id'), "
        "F.col('ts').alias('event_timestamp'), (F.col('amount') + 1).alias('spend'), "
        "'country')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "spend_transforms", raising=False)
    path = kit.silver(kit.rows(range(4)))
    store = make_store("store")
    store.register_features(kit.group({"table": path, "transform": "spend_transforms:rows"}))
    materialize_from_source(store, "spend")
    spark.sql(f"UPDATE delta.`{path}` SET amount = 10 WHERE id = 2")
    assert materialize_from_source(store, "spend").mode == "incremental"
    spend = {r["customer_id"]: r["spend"] for r in store.read_table("spend").collect()}
    assert spend == {0: 1.0, 1: 2.0, 2: 11.0, 3: 4.0}

    query_only = kit.group(
        {
            "query": f"SELECT id AS customer_id, ts AS event_timestamp, amount AS spend, country "
            f"FROM delta.`{path}`"
        },
        name="spend_copy",
    )
    store.register_features(query_only)
    run = materialize_from_source(store, "spend_copy")
    assert run.mode == "full" and run.rows_written == 4

    store.register_features(
        kit.group({"table": path, "transform": "spend_transforms:nope"}, name="broken")
    )
    with pytest.raises(MaterializationError, match="no function 'nope'"):
        materialize_from_source(store, "broken")
    store.register_features(kit.group(None, name="sourceless"))
    with pytest.raises(MaterializationError, match="declares no source"):
        materialize_from_source(store, "sourceless")


@pytest.mark.parametrize("shape", ["newest", "spread"])
def test_incremental_equals_rebuild_for_newest_and_spread_changes(
    spark: SparkSession, kit: SimpleNamespace, make_store: Stores, shape: str
) -> None:
    """Updates, deletes and inserts on the newest rows or spread over the table: with
    `gold_deletion_vectors` the MERGE marks replaced rows with deletion vectors (no unchanged
    row copied) and the table equals a rebuild."""
    rows = 400
    path = kit.silver(kit.rows(range(rows)))
    spark.read.format("delta").load(path).repartitionByRange(4, "id").write.format("delta").mode(
        "overwrite"
    ).save(path)
    schema = kit.group({"table": path, "query": kit.query})
    store = make_store("incremental", gold_deletion_vectors=True)
    store.register_features(schema)
    materialize_from_source(store, "spend")
    assert len(store.read_table("spend").inputFiles()) > 1

    table = f"delta.`{path}`"
    if shape == "newest":
        updated, deleted = "id >= 380 AND id < 390", "id >= 390"
        inserted = kit.rows(range(rows, rows + 6))
    else:
        updated, deleted = "id % 40 = 1", "id % 40 = 2"
        inserted = kit.rows(range(-6, 0), amount=-1.0)  # before the oldest rows
    spark.sql(f"UPDATE {table} SET amount = amount + 0.5 WHERE {updated}")
    spark.sql(f"DELETE FROM {table} WHERE {deleted}")
    spark.createDataFrame(
        inserted, "id BIGINT, ts TIMESTAMP, amount DOUBLE, country STRING"
    ).write.format("delta").mode("append").save(path)

    run = materialize_from_source(store, "spend")
    assert run.mode == "incremental"
    merge = store.history("spend")[0]
    assert merge.operation == "MERGE"
    assert merge.metrics["numTargetRowsCopied"] == "0"
    assert int(merge.metrics["numTargetDeletionVectorsAdded"]) > 0

    rebuilt = make_store("rebuilt")
    rebuilt.register_features(schema)
    materialize_from_source(rebuilt, "spend", full=True)
    expected = kit.gold(rebuilt.read_table("spend"), schema)
    assert kit.gold(store.read_table("spend"), schema) == expected
    # the row count recorded for the write leaves out the rows the vectors delete
    assert store.registry.group_state("spend").row_count == len(expected)


def test_inserts_only_are_appended_and_equal_rebuild(
    spark: SparkSession, kit: SimpleNamespace, make_store: Stores
) -> None:
    """Source rows only inserted (one row the query filters out): the run appends their Gold
    rows without a MERGE, and the table equals a rebuild. Keys + event times given twice by
    the inserts fail the run as a merge batch would, leaving table and watermark."""
    path = kit.silver(kit.rows(range(10)))
    schema = kit.group({"table": path, "query": kit.query})
    store = make_store("incremental")
    store.register_features(schema)
    materialize_from_source(store, "spend")
    columns = "id BIGINT, ts TIMESTAMP, amount DOUBLE, country STRING"
    spark.createDataFrame(
        [*kit.rows(range(10, 14)), (14, kit.t0, -1.0, "FR")], columns
    ).write.format("delta").mode("append").save(path)

    run = materialize_from_source(store, "spend")
    assert run.mode == "incremental" and run.rows_written == 4
    assert store.history("spend")[0].operation == "WRITE"
    rebuilt = make_store("rebuilt")
    rebuilt.register_features(schema)
    materialize_from_source(rebuilt, "spend", full=True)
    expected = kit.gold(rebuilt.read_table("spend"), schema)
    assert kit.gold(store.read_table("spend"), schema) == expected and len(expected) == 14
    # re-running the range (watermark put back, as after a crash between the Gold commit and
    # the watermark) appends nothing twice
    mark = watermark(store, "spend")
    store.registry.put_object(WATERMARK, "spend@1", {**mark, "source_version": 0})
    again = materialize_from_source(store, "spend")
    assert again.mode == "incremental" and again.rows_written == 0
    assert kit.gold(store.read_table("spend"), schema) == expected

    before = (watermark(store, "spend"), _gold_version(store, "spend"))
    twice = kit.rows([20, 20])
    spark.createDataFrame(twice, columns).write.format("delta").mode("append").save(path)
    with pytest.raises(SchemaValidationError, match="more than once"):
        materialize_from_source(store, "spend")
    assert (watermark(store, "spend"), _gold_version(store, "spend")) == before
