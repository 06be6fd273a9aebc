"""Small writes without Spark: a pandas/Arrow batch of a few rows written by delta-rs does what
the Spark write path does (rows, schema, protocol, registry record, errors), and the two kinds
of writers share a table safely."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

import featurelake
from featurelake import storage
from featurelake.config import FeatureStoreConfig
from featurelake.errors import SchemaValidationError
from featurelake.registry import Lineage
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

from .test_materialized import COLUMNS, SCHEMA, T0


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def frame(*rows: tuple[Any, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "event_timestamp", "age", "segment", "score"])


@pytest.fixture
def stores(
    spark: SparkSession, store_config: FeatureStoreConfig
) -> tuple[MaterializedFeatureStore, MaterializedFeatureStore]:
    """(a store writing small batches with delta-rs, one writing everything with Spark)."""
    small = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    large = MaterializedFeatureStore(
        StoreContext.of(
            dataclasses.replace(
                store_config,
                storage_path=store_config.storage_path + "-spark",
                small_write_max_rows=0,
            ),
            spark,
        )
    )
    for store in (small, large):
        store.register_features(SCHEMA)
    return small, large


def table_rows(store: MaterializedFeatureStore) -> list[tuple[Any, ...]]:
    frame = store.read_table("customers").drop("_ingested_at")
    return sorted(tuple(r) for r in frame.collect())


def table_shape(store: MaterializedFeatureStore) -> dict[str, Any]:
    """Schema, protocol, properties and partitions of the group's Gold table, from its log."""
    table = storage.open_table(str(store.location("customers").path))
    protocol = table.protocol()
    metadata = table.metadata()
    return {
        "schema": json.loads(table.schema().to_json()),
        "protocol": (
            protocol.min_reader_version,
            protocol.min_writer_version,
            protocol.reader_features,
            protocol.writer_features,
        ),
        "configuration": metadata.configuration,
        "partitions": metadata.partition_columns,
    }


def recorded(store: MaterializedFeatureStore, kind: str) -> list[dict[str, Any]]:
    """The registry's records of the writes (`write` or `lineage`), without their times."""
    events = store.registry.events(kind, "customers@1")
    drop = ("at", "duration_seconds", "recorded_at")
    return [{k: v for k, v in e.items() if k not in drop} for e in events]


def test_the_delta_rs_path_writes_what_the_spark_path_writes(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore],
) -> None:
    small, large = stores
    berlin = pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-02 00:00"])
    first = frame(
        (1, None, 30, "a", 0.1),
        (2, None, 41, None, 0.2),
        (3, None, None, "c", 0.3),
    ).assign(event_timestamp=berlin.tz_localize("Europe/Berlin"))
    steps = [
        ("append", first),
        ("merge", frame((1, day(0) + timedelta(hours=9), 31, "b", 0.5), (4, day(3), 5, "a", 1.0))),
        ("append", frame((5, day(4), 6, "b", 2.0))),
        ("overwrite", frame((9, day(5), 20, "a", 1.0), (10, day(5), 21, "c", 1.5))),
    ]
    lineage = Lineage(sources=("silver.customers",))
    for mode, data in steps:
        ours = small.write_features("customers", data, mode=mode, lineage=lineage)
        theirs = large.write_features("customers", data, mode=mode, lineage=lineage)
        assert (ours.engine, theirs.engine) == ("delta-rs", "spark")
        assert (ours.rows_written, ours.delta_version, ours.row_count) == (
            theirs.rows_written,
            theirs.delta_version,
            theirs.row_count,
        ), mode
        assert table_rows(small) == table_rows(large), mode
    assert table_rows(small) == [(9, day(5), 20, "a", 1.0), (10, day(5), 21, "c", 1.5)]
    assert small.read_table("customers").schema == large.read_table("customers").schema
    assert table_shape(small) == table_shape(large)
    assert recorded(small, "write") == recorded(large, "write")
    assert recorded(small, "lineage") == recorded(large, "lineage")
    assert len(recorded(small, "write")) == len(steps)
    ingested = small.read_table("customers").select("_ingested_at").collect()
    assert all(r["_ingested_at"] is not None for r in ingested)
    merge = small.history("customers")[2]
    assert merge.operation == "MERGE" and (merge.user_metadata or "").startswith("featurelake:")


def test_arrow_batches_take_the_safe_casts(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore], spark: SparkSession
) -> None:
    small, large = stores
    arrow = pa.table(
        {
            "customer_id": pa.array([1, 2], pa.int32()),
            "event_timestamp": pa.array([day(0).date(), day(1).date()], pa.date32()),
            "age": pa.array([3, 4], pa.int16()),
            "segment": ["a", "b"],
            "score": pa.array([0.5, 0.25], pa.float32()),
        }
    )
    assert small.write_features("customers", arrow).engine == "delta-rs"
    narrow = "customer_id int, event_timestamp date, age int, segment string, score float"
    large.write_features("customers", spark.createDataFrame(arrow.to_pylist(), narrow))
    assert (
        table_rows(small)
        == table_rows(large)
        == [(1, day(0), 3, "a", 0.5), (2, day(1), 4, "b", 0.25)]
    )


def test_an_arrow_table_takes_the_spark_path_too(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore],
) -> None:
    small, large = stores
    arrow = pa.table(
        {
            "customer_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([day(0), day(1)], pa.timestamp("us")),
            "age": pa.array([3, 4], pa.int16()),
            "segment": ["a", "b"],
            "score": pa.array([0.5, 0.25], pa.float32()),
        }
    )
    assert large.write_features("customers", arrow).engine == "spark"
    assert small.write_features("customers", arrow).engine == "delta-rs"
    assert (
        table_rows(large)
        == table_rows(small)
        == [(1, day(0), 3, "a", 0.5), (2, day(1), 4, "b", 0.25)]
    )


BAD_BATCHES = [
    ("missing column", frame((1, day(0), 3, "a", 0.5)).drop(columns=["age"])),
    ("extra column", frame((1, day(0), 3, "a", 0.5)).assign(color="red")),
    ("lossy int", frame((1, day(0), 2**40, "a", 0.5))),
    ("text for a number", frame((1, day(0), 3, "a", "high"))),
    ("null key", frame((None, day(0), 3, "a", 0.5), (2, day(0), 3, "a", 0.5))),
    ("null time", frame((1, None, 3, "a", 0.5))),
    ("above max", frame((1, day(0), 200, "a", 0.5), (2, day(0), 300, "zzz", 0.5))),
    ("below min", frame((1, day(0), -1, "a", 0.5))),
    ("not allowed", frame((1, day(0), 3, "zzz", 0.5))),
    ("required null", frame((1, day(0), 3, "a", None))),
    ("duplicate in a merge", frame((1, day(0), 2, "a", 1.0), (1, day(0), 3, "b", 1.0))),
]


@pytest.mark.parametrize(("case", "data"), BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_the_same_errors_and_nothing_written(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore],
    case: str,
    data: pd.DataFrame,
) -> None:
    small, large = stores
    mode = "merge" if "merge" in case else "append"
    ours = theirs = None
    with pytest.raises(SchemaValidationError) as raised:
        small.write_features("customers", data, mode=mode)
    ours = raised.value
    assert not storage.is_delta_table(str(small.location("customers").path))  # nothing created
    small.write_features("customers", frame((7, day(0), 1, "a", 1.0)))
    with pytest.raises(SchemaValidationError) as raised:
        small.write_features("customers", data, mode=mode)
    assert str(raised.value) == str(ours)
    assert small.history("customers")[0].version == 1
    assert table_rows(small) == [(7, day(0), 1, "a", 1.0)]
    with pytest.raises(SchemaValidationError) as raised:
        large.write_features("customers", data, mode=mode)
    theirs = raised.value
    if case in ("lossy int", "text for a number"):  # the converters' own words differ
        assert "does not convert to the schema's types without loss" in str(ours)
        assert "does not convert to the schema's types without loss" in str(theirs)
    else:
        assert str(ours) == str(theirs)
        assert ours.details == theirs.details


def test_arrow_type_errors_read_like_the_spark_paths(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore], spark: SparkSession
) -> None:
    small, large = stores
    rows = [{"customer_id": 1, "event_timestamp": day(0), "age": 3, "segment": "a", "score": "x"}]
    with pytest.raises(SchemaValidationError) as ours:
        small.write_features(
            "customers", pa.Table.from_pylist(rows).set_column(2, "age", pa.array([3], pa.int32()))
        )
    with pytest.raises(SchemaValidationError) as theirs:
        large.write_features(
            "customers",
            spark.createDataFrame(
                rows,
                "customer_id bigint, event_timestamp timestamp, age int, segment string, "
                "score string",
            ),
        )
    assert str(ours.value) == str(theirs.value)
    assert "Column 'score'" in str(ours.value)


def test_a_table_delta_rs_cannot_write_goes_to_spark(
    stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore], spark: SparkSession
) -> None:
    small, _ = stores
    small.write_features("customers", spark.createDataFrame([(1, day(0), 3, "a", 0.5)], COLUMNS))
    location = small.location("customers")
    spark.sql(
        f"ALTER TABLE {location.sql_name} SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)"
    )
    result = small.write_features("customers", frame((2, day(1), 4, "b", 0.5)), mode="merge")
    assert result.engine == "spark"
    assert table_rows(small) == [(1, day(0), 3, "a", 0.5), (2, day(1), 4, "b", 0.5)]


def test_spark_and_delta_rs_writers_at_once_lose_nothing(
    spark: SparkSession, stores: tuple[MaterializedFeatureStore, MaterializedFeatureStore]
) -> None:
    store, _ = stores
    store.write_features("customers", frame((0, day(0), 1, "a", 1.0)))
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    engines: list[str] = []

    def write(kind: str, base: int) -> None:
        try:
            start.wait()
            for round_ in range(4):
                ids = [base + round_ * 10 + i for i in range(5)]
                rows = [(i, day(1), 30, "b", 0.5) for i in ids]
                data = spark.createDataFrame(rows, COLUMNS) if kind == "spark" else frame(*rows)
                mode = "merge" if round_ % 2 else "append"
                engines.append(store.write_features("customers", data, mode=mode).engine)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=write, args=("spark", 1_000)),
        threading.Thread(target=write, args=("pandas", 2_000)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(engines) == ["delta-rs"] * 4 + ["spark"] * 4
    ids = sorted(r[0] for r in table_rows(store))
    expected = [0] + [b + r * 10 + i for b in (1_000, 2_000) for r in range(4) for i in range(5)]
    assert ids == sorted(expected)
    history = store.history("customers")
    assert len(history) == 10  # the create, the first write and the eight writes
    assert store.registry.group_state("customers").writes == 9


FRESH_WRITE = """
import os, sys
import pandas as pd
from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.serving.store import FeatureStore

store = FeatureStore(FeatureStoreConfig(storage_path=sys.argv[1]))
store.register_features(FeatureGroupSchema(
    name="customers", entity_keys=["customer_id"], entity_key_types={"customer_id": "bigint"},
    features=[FeatureSchema("age", "int", min_value=0), FeatureSchema("score", "double")],
))
n = 1_000
result = store.write_features("customers", pd.DataFrame({
    "customer_id": range(n),
    "event_timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(range(n), "s"),
    "age": [i % 90 for i in range(n)],
    "score": [i / n for i in range(n)],
}))
children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                command = cmd.read().replace(b"\\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            children.append(command)
context = None
if "pyspark" in sys.modules:
    from pyspark import SparkContext
    context = SparkContext._active_spark_context
print(result.engine, result.rows_written, result.row_count, store.spark_session, context,
      any("java" in c for c in children))
"""


def test_a_fresh_process_writes_1000_rows_without_a_jvm(tmp_path: Path) -> None:
    source = str(Path(featurelake.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH_WRITE), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["delta-rs", "1000", "1000", "None", "None", "False"]
