"""The key and event-time bounds an incremental MERGE adds to its ON condition."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from pyspark.sql import SparkSession

from featurelake.gold.merge_bounds import target_bounds
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark

T0 = datetime(2024, 3, 1, 12, 30, 0, 123456)
NAMES = FeatureGroupSchema.from_dict(
    {
        "name": "names",
        "entity_keys": ["name"],
        "timestamp_key": "event_timestamp",
        "features": [{"name": "score", "type": "double"}],
    }
)
COLUMNS = "name STRING, event_timestamp TIMESTAMP, score DOUBLE"


def test_bounds_are_typed_literals_with_quotes_and_backslashes_escaped(
    spark: SparkSession,
) -> None:
    frame = spark.createDataFrame(
        [("o'brien", T0, 1, 2.0), ("back\\slash", datetime(2024, 3, 2), 5, 6.0)],
        "name STRING, ts TIMESTAMP, n BIGINT, d DOUBLE",
    )
    conditions = target_bounds(frame, ["name", "ts", "n", "d", "absent"])
    assert conditions == [
        "t.`name` >= 'back\\\\slash'",
        "t.`name` <= 'o\\'brien'",
        "t.`ts` >= TIMESTAMP '2024-03-01 12:30:00.123456Z'",
        "t.`ts` <= TIMESTAMP '2024-03-02 00:00:00.000000Z'",
        "t.`n` >= 1L",
        "t.`n` <= 5L",
    ]
    # each bound, read back by Spark's parser, is the value it was taken from
    query = "SELECT " + ", ".join(c.split(" ", 2)[-1] for c in conditions)
    literals = spark.sql(query).collect()[0]
    assert list(literals) == ["back\\slash", "o'brien", T0, datetime(2024, 3, 2), 1, 5]
    assert target_bounds(frame.limit(0), ["name", "n"]) == []


def test_apply_changes_on_string_keys_with_quotes(
    spark: SparkSession, make_store: Callable[[str], MaterializedFeatureStore]
) -> None:
    store = make_store("names")
    store.register_features(NAMES)
    start = [("a", T0, 1.0), ("back\\slash", T0, 2.0), ("o'brien", T0, 3.0), ("z", T0, 4.0)]
    store.write_features("names", spark.createDataFrame(start, COLUMNS))
    upserts = spark.createDataFrame([("o'brien", T0, 30.0), ("b\\'c", T0, 5.0)], COLUMNS)
    deletes = spark.createDataFrame([("back\\slash", T0)], "name STRING, event_timestamp TIMESTAMP")
    result = store.apply_changes("names", upserts, deletes)
    rows = sorted(tuple(r) for r in store.read_table("names").select("name", "score").collect())
    assert rows == [("a", 1.0), ("b\\'c", 5.0), ("o'brien", 30.0), ("z", 4.0)]
    assert result.row_count == 4
