"""The DuckDB engine answers like the Spark engine on the same Delta tables."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyarrow import fs
from pyspark.sql import SparkSession

from featurelake import storage
from featurelake.config import FeatureStoreConfig
from featurelake.engines.duckdb.executor import DuckDBQueryExecutor
from featurelake.engines.duckdb.reader import DuckDBFeatureReader
from featurelake.engines.spark.training import build_training_set
from featurelake.errors import (
    DeltaTableNotReadableError,
    DependencyNotInstalledError,
    VirtualizationQueryError,
)
from featurelake.gold.delta_reader import open_snapshot, read_arrow
from featurelake.plan.read_plan import ReadRequest
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore
from featurelake.stores.virtualized import VirtualizedFeatureStore
from featurelake.virtual.executors import VirtualQuery, create_query_executor

pytest.importorskip("duckdb")
pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1)
CUSTOMERS = 12


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


PROFILE = FeatureGroupSchema(
    name="profile",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    timestamp_key="event_timestamp",
    ttl="2d",
    features=[
        FeatureSchema("spend", "double"),
        FeatureSchema("tier", "string"),
        FeatureSchema("visits", "int"),
    ],
)
RISK = FeatureGroupSchema(
    name="risk",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    timestamp_key="scored_at",
    features=[FeatureSchema("score", "double"), FeatureSchema("visits", "int")],
)


def profile_batch(rng: random.Random, n: int) -> pd.DataFrame:
    """Events on a coarse time grid (many equal times), with nulls."""
    rows = []
    for _ in range(n):
        rows.append(
            {
                "customer_id": rng.randint(1, CUSTOMERS),
                "event_timestamp": at(6 * rng.randint(0, 20)),
                "spend": None if rng.random() < 0.2 else float(rng.randint(0, 5)),
                "tier": None if rng.random() < 0.2 else rng.choice(["a", "b", "c"]),
                "visits": None if rng.random() < 0.2 else rng.randint(0, 3),
            }
        )
    frame = pd.DataFrame(rows)
    frame["visits"] = frame["visits"].astype("Int32")
    return frame


def risk_batch(rng: random.Random, n: int) -> pd.DataFrame:
    rows = [
        {
            "customer_id": rng.randint(1, CUSTOMERS),
            "scored_at": at(rng.randint(0, 120)),
            "score": None if rng.random() < 0.1 else round(rng.random(), 3),
            "visits": rng.randint(0, 9),
        }
        for _ in range(n)
    ]
    frame = pd.DataFrame(rows).drop_duplicates(["customer_id", "scored_at"])
    frame["visits"] = frame["visits"].astype("Int32")
    return frame


@dataclass
class Env:
    spark: SparkSession
    config: FeatureStoreConfig
    store: MaterializedFeatureStore
    reader: DuckDBFeatureReader
    versions: list[int]


@pytest.fixture(scope="module")
def env(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, store_paths: Any
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("duckdb")
    config = FeatureStoreConfig(
        storage_path=store_paths.path(root),
        storage=store_paths.storage,
        metadata_cache_ttl_seconds=60,
    )
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    store.register_features(PROFILE)
    store.register_features(RISK)
    rng = random.Random(7)
    versions = []
    # Two appends: equal (key, time) inside a batch tie on _ingested_at too; across batches
    # the later write wins.
    versions.append(store.write_features("profile", profile_batch(rng, 120)).delta_version)
    versions.append(store.write_features("profile", profile_batch(rng, 60)).delta_version)
    merge = profile_batch(rng, 40).drop_duplicates(["customer_id", "event_timestamp"])
    versions.append(store.write_features("profile", merge, mode="merge").delta_version)
    store.write_features("risk", risk_batch(rng, 80))
    # Deletion vectors on, then a delete outside featurelake: delta-rs must honour both.
    gold = store.location("profile").path
    spark.sql(
        f"ALTER TABLE delta.`{gold}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')"
    )
    spark.sql(f"DELETE FROM delta.`{gold}` WHERE customer_id = 3 OR spend = 4")
    reader = DuckDBFeatureReader(store.registry)
    yield Env(spark, config, store, reader, versions)


def normalized(frame: pd.DataFrame, order: list[str]) -> list[tuple[Any, ...]]:
    """Rows as plain tuples, sorted, with every null as None and times as datetimes."""
    out = []
    for row in frame[order + [c for c in frame.columns if c not in order]].itertuples(index=False):
        values = []
        for value in row:
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
                values.append(None)
            elif isinstance(value, pd.Timestamp):
                values.append(value.to_pydatetime())
            elif hasattr(value, "item"):
                values.append(value.item())
            else:
                values.append(value)
        out.append(tuple(values))
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def same(spark_frame: Any, duck: pd.DataFrame, order: list[str]) -> list[tuple[Any, ...]]:
    expected = spark_frame.toPandas()
    assert list(duck.columns) == list(expected.columns)
    assert normalized(duck, order) == normalized(expected, order)
    return normalized(duck, order)


def entity_rows(rng: random.Random, n: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "row_id": range(n),
            "customer_id": [rng.randint(1, CUSTOMERS + 2) for _ in range(n)],
            "event_timestamp": [at(rng.randint(-6, 130) + rng.choice([0, 0.5])) for _ in range(n)],
            "label": [rng.random() for _ in range(n)],
        }
    )
    frame["customer_id"] = frame["customer_id"].astype("Int64")
    frame.loc[3, "customer_id"] = pd.NA  # a null key
    frame.loc[5, "event_timestamp"] = pd.NaT  # a null time
    return frame


# -- latest values ------------------------------------------------------------------------------


def test_latest_values_match_spark(env: Env) -> None:
    for refs, ids, when in [
        ("profile.*", None, None),
        ("profile.*", [1, 2, 3, 5, 99], None),
        (["profile.tier", "profile.visits"], [2, 4, 6], at(40)),
        ("profile.spend", None, at(3)),
    ]:
        expected = env.store.get_features(refs, ids, when)
        duck = env.reader.read(ReadRequest.latest(refs, when), ids)
        rows = same(expected, duck, ["customer_id"])
        assert rows, (refs, ids, when)
    ids_frame = pd.DataFrame({"customer_id": [1, 7, 8]})
    same(
        env.store.get_features("profile.*", ids_frame),
        env.reader.read(ReadRequest.latest("profile.*"), ids_frame),
        ["customer_id"],
    )


def test_several_groups_are_joined_on_their_keys(env: Env) -> None:
    refs = ["profile.spend", "profile.visits", "risk.score", "risk.visits"]
    duck = env.reader.read(ReadRequest.latest(refs, at(80)), list(range(1, CUSTOMERS + 3)))
    same(env.store.get_features(refs, list(range(1, CUSTOMERS + 3)), at(80)), duck, ["customer_id"])
    assert {"profile__visits", "risk__visits"} <= set(duck.columns)


def test_time_travel_reads_the_same_version(env: Env) -> None:
    for version in env.versions:
        duck = env.reader.read(ReadRequest.latest("profile.*", as_of_version=version))
        same(env.store.get_features("profile.*", as_of_version=version), duck, ["customer_id"])
    commits = {c.version: c.timestamp for c in env.store.history("profile")}
    when = commits[env.versions[1]]
    same(
        env.store.get_features("profile.*", as_of_timestamp=when),
        env.reader.read(ReadRequest.latest("profile.*", as_of_timestamp=when)),
        ["customer_id"],
    )
    first = env.reader.read(ReadRequest.latest("profile.*", as_of_version=env.versions[0]))
    latest = env.reader.read(ReadRequest.latest("profile.*"))
    assert 3 in set(first["customer_id"]) and 3 not in set(latest["customer_id"])


# -- point in time ------------------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["none", "last_non_null"])
def test_point_in_time_matches_spark(env: Env, fill: str) -> None:
    entities = entity_rows(random.Random(11), 60)
    refs = ["profile.*", "risk.score", "risk.visits"]
    expected = env.store.get_historical_features(entities, refs, fill=fill)
    duck = env.reader.read(ReadRequest.historical(refs, fill=fill), entities)
    rows = same(expected, duck, ["row_id"])
    assert list(duck["row_id"]) == list(range(60))  # entity order is kept
    assert any(r[4] is not None for r in rows) and any(r[4] is None for r in rows)


def test_point_in_time_ttl_override_matches_spark(env: Env) -> None:
    entities = entity_rows(random.Random(12), 40)
    for ttl in ("6h", "1s"):
        expected = env.store.get_historical_features(entities, "profile.*", ttl=ttl)
        duck = env.reader.read(ReadRequest.historical("profile.*", ttl=ttl), entities)
        same(expected, duck, ["row_id"])


def test_string_entity_times_and_pinned_versions(env: Env) -> None:
    entities = entity_rows(random.Random(13), 20).dropna()
    entities["event_timestamp"] = entities["event_timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    version = env.versions[0]
    request = ReadRequest.historical("profile.*")
    duck = env.reader.read(request, entities, versions={"profile": version})
    pinned = build_training_set(env.store, entities, request, pinned_versions={"profile": version})
    same(pinned.df, duck, ["row_id"])


# -- delta-rs reads -----------------------------------------------------------------------------


def test_delta_rs_reads_a_spark_table_after_merges_and_deletes(env: Env) -> None:
    path = str(env.store.location("profile").path)
    snapshot = open_snapshot(path)
    assert "deletionVectors" in (snapshot.table.protocol().reader_features or [])
    table = read_arrow(snapshot).to_pandas()
    spark_rows = env.spark.read.format("delta").load(path).toPandas()
    order = ["customer_id", "event_timestamp", "_ingested_at", "spend", "tier", "visits"]
    assert len(table) == len(spark_rows) > 0
    assert normalized(table, order) == normalized(spark_rows, order)
    assert 3 not in set(table["customer_id"]) and 4.0 not in set(table["spend"].dropna())


def test_a_table_delta_rs_cannot_read_gives_a_typed_error(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "future"
    source, inner = storage.filesystem(str(env.store.location("risk").path))  # local or s3
    fs.copy_files(
        inner, str(path), source_filesystem=source, destination_filesystem=fs.LocalFileSystem()
    )
    log = path / "_delta_log"
    version = max(int(p.stem) for p in log.glob("*.json")) + 1
    protocol = {
        "protocol": {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": ["someFutureFeature"],
            "writerFeatures": ["someFutureFeature"],
        }
    }
    commit = {"commitInfo": {"timestamp": 1, "operation": "SET TBLPROPERTIES"}}
    (log / f"{version:020d}.json").write_text(json.dumps(commit) + "\n" + json.dumps(protocol))
    with pytest.raises(DeltaTableNotReadableError, match="someFutureFeature") as caught:
        open_snapshot(str(path))
    assert "engine='spark'" in str(caught.value)


# -- virtual groups in DuckDB SQL ---------------------------------------------------------------


def test_duckdb_virtual_groups_read_like_spark_ones(env: Env) -> None:
    silver = str(env.store.location("risk").path)
    spark_sql = (
        f"SELECT customer_id, scored_at AS event_timestamp, score * 2 AS spend, "
        f"CAST(NULL AS STRING) AS tier, visits FROM delta.`{silver}`"
    )
    duck_sql = (
        f"SELECT customer_id, scored_at AS event_timestamp, score * 2 AS spend, "
        f"CAST(NULL AS VARCHAR) AS tier, visits FROM delta_scan('{silver}') -- a comment"
    )
    virtual = VirtualizedFeatureStore(StoreContext.of(env.config, env.spark, env.store.registry))
    groups = {}
    for engine, query in (("spark", spark_sql), ("duckdb", duck_sql)):
        schema = FeatureGroupSchema(
            name=f"doubled_{engine}",
            entity_keys=["customer_id"],
            entity_key_types={"customer_id": "bigint"},
            features=list(PROFILE.features),
        )
        groups[engine] = virtual.define_virtual_features(schema, query, engine=engine)
    assert groups["duckdb"].engine == "duckdb"
    assert groups["duckdb"].source_paths == (silver,)
    reader = DuckDBFeatureReader(env.store.registry, virtual=virtual)
    by_spark = virtual.get_features("doubled_spark.*", [1, 2, 5])
    by_duck_on_spark = virtual.get_features("doubled_duckdb.*", [1, 2, 5])
    by_duck = reader.read(
        ReadRequest.latest("doubled_duckdb.*"), [1, 2, 5], virtual_groups={"doubled_duckdb"}
    )
    same(by_spark, by_duck, ["customer_id"])
    same(by_duck_on_spark, by_duck, ["customer_id"])
    entities = entity_rows(random.Random(5), 30)
    same(
        virtual.get_historical_features(entities, "doubled_spark.*"),
        reader.read(
            ReadRequest.historical("doubled_duckdb.*"), entities, virtual_groups={"doubled_duckdb"}
        ),
        ["row_id"],
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELEC customer_id FROM t", "does not parse"),
        ("SELECT * FROM silver_events", "table or view that does not exist"),
        ("SELECT nope FROM delta_scan('{path}')", "column that does not exist"),
        ("SELECT 1 AS a; DROP TABLE x", "does not parse"),
        ("SELECT customer_id FROM delta_scan('{path}')", "lacks the column"),
        ("SELECT * FROM delta_scan('{path}/missing')", "no Delta table"),
    ],
)
def test_a_bad_duckdb_query_is_refused_at_definition(env: Env, query: str, message: str) -> None:
    virtual = VirtualizedFeatureStore(StoreContext.of(env.config, env.spark, env.store.registry))
    path = str(env.store.location("risk").path)
    schema = FeatureGroupSchema(
        name="bad_duck",
        entity_keys=["customer_id"],
        features=[FeatureSchema("score", "double")],
        timestamp_key="scored_at",
    )
    with pytest.raises(VirtualizationQueryError, match=message) as caught:
        virtual.define_virtual_features(schema, query.format(path=path), engine="duckdb")
    assert caught.value.fix
    assert virtual.find_definition(schema) is None


def test_the_executor_is_registered_and_needs_duckdb(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = create_query_executor("duckdb", lambda: env.spark)
    assert isinstance(executor, DuckDBQueryExecutor)
    rows = executor.execute_arrow("g", VirtualQuery(sql="SELECT 1 AS a"))
    assert rows.to_pylist() == [{"a": 1}]
    assert executor.timings()["execute"]["calls"] == 1
    monkeypatch.setitem(__import__("sys").modules, "duckdb", None)
    with pytest.raises(DependencyNotInstalledError, match=r"pip install 'featurelake\[duckdb\]'"):
        create_query_executor("duckdb", lambda: env.spark)
