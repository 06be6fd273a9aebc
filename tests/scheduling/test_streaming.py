"""Structured Streaming into a group: restart after a crash, a bad micro-batch, online pushes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyspark.sql import SparkSession

from featurelake import storage
from featurelake.errors import SchemaValidationError
from featurelake.gold import delta_ops
from featurelake.online import RedisOnlineStore
from featurelake.scheduling.streaming import (
    DRIVER_MAX_ROWS,
    StreamBatch,
    request_stop,
    start_stream,
)
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark

COLUMNS = "id BIGINT, ts TIMESTAMP, amount DOUBLE, country STRING"
ONE_FILE = {"maxFilesPerTrigger": "1"}


def _append(spark: SparkSession, path: Path, rows: list[tuple[Any, ...]]) -> None:
    """One Delta commit of one file (so each commit is one micro-batch with ONE_FILE)."""
    frame = spark.createDataFrame(rows, COLUMNS).coalesce(1)
    frame.write.format("delta").mode("append").save(str(path))


@pytest.mark.redis
@pytest.mark.parametrize(
    ("driver_max_rows", "deletion_vectors", "engine"),
    [
        (DRIVER_MAX_ROWS, False, "driver+delta-rs"),
        # delta-rs does not write tables with deletion vectors: Spark merges the checked rows
        (DRIVER_MAX_ROWS, True, "driver+spark"),
        (0, False, "spark"),
    ],
    ids=["driver", "driver-deletion-vectors", "spark"],
)
def test_stream_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    spark: SparkSession,
    kit: SimpleNamespace,
    make_store: Callable[[str], MaterializedFeatureStore],
    tmp_path: Path,
    redis_server: Any,
    driver_max_rows: int,
    deletion_vectors: bool,
    engine: str,
) -> None:
    silver = tmp_path / "silver"
    commits = [
        kit.rows(range(10)),
        # new entities, and later events of entities 0-4: the values online must become these
        kit.rows(range(10, 15))
        + [(i, kit.t0 + timedelta(days=1, minutes=i), 100.0 + i, "ES") for i in range(5)],
    ]
    for rows in commits:
        _append(spark, silver, rows)
    store = make_store("store", gold_deletion_vectors=deletion_vectors)
    schema = kit.group({"table": str(silver), "query": kit.query})
    store.register_features(schema)
    online = RedisOnlineStore(redis_server.url, timeout_ms=2000, namespace=uuid.uuid4().hex[:8])

    def crash_in_batch_zero(batch: StreamBatch) -> None:
        # Gold and online are written, Spark has not yet recorded the batch as done
        raise RuntimeError(f"killed in the middle of micro-batch {batch.batch_id}")

    first = start_stream(
        store,
        "spend",
        trigger="available_now",
        options=ONE_FILE,
        online=online,
        on_batch=crash_in_batch_zero,
        driver_max_rows=driver_max_rows,
    )
    with pytest.raises(RuntimeError, match="killed in the middle"):
        first.await_termination(timeout=120)
    assert [b.batch_id for b in first.batches] == [0]
    assert len(store.read_table("spend").collect()) == 10

    second = start_stream(
        store,
        "spend",
        trigger="available_now",
        options=ONE_FILE,
        online=online,
        driver_max_rows=driver_max_rows,
    )
    assert second.await_termination(timeout=120)
    assert [b.batch_id for b in second.batches] == [0, 1]  # batch 0 again, then the rest
    if storage.is_object_store(store.config.storage_path):
        # delta-rs creates no Gold table on object storage: Spark may merge a first batch
        assert {b.engine for b in second.batches} <= {engine, "driver+spark"}
    else:
        assert {b.engine for b in second.batches} == {engine}
    assert all(b.online_seconds is not None for b in second.batches)
    assert second.batches[0].rows_written == 10  # the replay rewrote its own rows...

    expected = sorted(
        (i, ts, amount * 2, country) for rows in commits for (i, ts, amount, country) in rows
    )
    assert kit.gold(store.read_table("spend"), schema) == expected  # ...without duplicates

    latest: dict[int, tuple[Any, ...]] = {}
    for row in expected:
        latest[row[0]] = row  # sorted by id then time: the last one per id wins
    vectors = online.get(["spend.spend", "spend.country"], list(range(15)))
    assert [(v.get("spend"), v.get("country")) for v in vectors] == [
        (latest[i][2], latest[i][3]) for i in range(15)
    ]
    online.close()


@pytest.mark.redis
def test_bad_micro_batch_stops_the_stream_and_writes_nothing(
    spark: SparkSession,
    kit: SimpleNamespace,
    make_store: Callable[[str], MaterializedFeatureStore],
    tmp_path: Path,
    redis_server: Any,
) -> None:
    silver = tmp_path / "silver"
    _append(spark, silver, kit.rows(range(5)))
    _append(spark, silver, [*kit.rows(range(5, 8)), (None, kit.t0, 1.0, "FR")])  # a null key
    store = make_store("store")
    schema = kit.group({"table": str(silver), "query": kit.query})
    store.register_features(schema)

    online = RedisOnlineStore(redis_server.url, timeout_ms=2000, namespace=uuid.uuid4().hex[:8])
    stream = start_stream(store, "spend", trigger="available_now", options=ONE_FILE, online=online)
    with pytest.raises(SchemaValidationError, match="customer_id"):
        stream.await_termination(timeout=120)
    assert not stream.is_active
    assert [b.batch_id for b in stream.batches] == [0]
    # the bad batch committed nothing: the table is at the version batch 0 wrote
    assert (
        delta_ops.current_version(spark, store.location("spend")) == stream.batches[0].gold_version
    )
    assert kit.gold(store.read_table("spend"), schema) == sorted(
        (i, ts, a * 2, c) for i, ts, a, c in kit.rows(range(5))
    )
    # online too has the good batch only: the bad one was refused before its push
    vectors = online.get(["spend.spend"], list(range(8)))
    assert [v.get("spend") for v in vectors] == [2.0 * i for i in range(5)] + [None] * 3
    online.close()

    # A stream of good data runs until asked to stop from outside (another process).
    clean = tmp_path / "clean"
    _append(spark, clean, kit.rows(range(20, 23)))
    other = start_stream(
        store,
        "spend",
        str(clean),  # the declared query applies to it
        trigger="1 second",
        checkpoint=str(tmp_path / "ckpt"),
    )
    while not other.batches:
        assert other.is_active, other.error
        other.await_termination(timeout=1)
    marker = request_stop(store, "spend", checkpoint=other.checkpoint)
    assert other.await_termination(timeout=60)
    assert not storage.object_exists(marker) and len(store.read_table("spend").collect()) == 8
