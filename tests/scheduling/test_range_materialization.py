"""A materialization of an event-time range: only the Gold rows in `[start, end)` are recomputed
from the source's current rows; the rest of the table and the watermark stay, and the next
incremental run still ends where a full rebuild would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession

from featurelake.errors import MaterializationError
from featurelake.quality.freshness import MATERIALIZATION_RUN
from featurelake.registry.registry import group_key
from featurelake.scheduling import materialize_from_source, watermark
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark


def test_a_range_recomputes_only_its_rows(
    spark: SparkSession,
    kit: SimpleNamespace,
    make_store: Callable[[str], MaterializedFeatureStore],
) -> None:
    path = kit.silver(kit.rows(range(20)))
    schema = kit.group({"table": path, "query": kit.query, "incremental": True})
    store = make_store("store")
    store.register_features(schema)
    first = materialize_from_source(store, "spend")
    mark = watermark(store, "spend")
    # every source amount changes tenfold; the range covers ids 5..9 (T0 + id minutes)
    spark.sql(f"UPDATE delta.`{path}` SET amount = amount * 10")
    start, end = kit.t0 + timedelta(minutes=5), kit.t0 + timedelta(minutes=10)
    run = materialize_from_source(store, "spend", start=start, end=end)
    assert (run.mode, run.rows_written, run.from_version) == ("range", 5, None)
    assert run.gold_version is not None and run.gold_version > (first.gold_version or 0)
    spend = {row[0]: row[2] for row in kit.gold(store.read_table("spend"), schema)}
    assert spend == {i: (20.0 * i if 5 <= i < 10 else 2.0 * i) for i in range(20)}
    assert watermark(store, "spend") == mark  # the change feed is still to be merged
    last = store.registry.events(MATERIALIZATION_RUN, group_key("spend", 1))[-1]
    assert last["mode"] == "range" and last["outcome"] == "succeeded"
    # the next incremental run merges the whole change: the table a rebuild gives
    after = materialize_from_source(store, "spend")
    assert after.mode == "incremental"
    rebuilt = make_store("rebuilt")
    rebuilt.register_features(schema)
    materialize_from_source(rebuilt, "spend", full=True)
    assert kit.gold(store.read_table("spend"), schema) == kit.gold(
        rebuilt.read_table("spend"), schema
    )


def test_a_range_needs_both_bounds_in_order(
    kit: SimpleNamespace, make_store: Callable[[str], MaterializedFeatureStore]
) -> None:
    path = kit.silver(kit.rows(range(3)))
    store = make_store("store")
    store.register_features(kit.group({"table": path, "query": kit.query}))
    materialize_from_source(store, "spend")
    version = store.history("spend")[0].version
    with pytest.raises(MaterializationError, match="needs both bounds") as caught:
        materialize_from_source(store, "spend", start=kit.t0)
    assert caught.value.fix and "start inclusive" in caught.value.fix
    with pytest.raises(MaterializationError, match="not a valid time range"):
        materialize_from_source(store, "spend", start=kit.t0 + timedelta(hours=1), end=kit.t0)
    assert store.history("spend")[0].version == version  # nothing was written
