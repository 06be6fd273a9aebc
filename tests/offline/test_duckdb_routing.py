"""The engine choice: small pandas reads run on DuckDB (no Spark session), others on Spark."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig, StoreMode
from featurelake.errors import (
    DependencyNotInstalledError,
    FeatureStoreError,
    UnsupportedOperationError,
)
from featurelake.plan.read_plan import ReadRequest
from featurelake.plan.routing import Strategy
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.serving.store import FeatureStore
from featurelake.stores.base import StoreContext
from featurelake.stores.hybrid import HybridFeatureStore

pytest.importorskip("duckdb")
pytestmark = pytest.mark.spark

T0 = datetime(2024, 1, 1)
CUSTOMERS, DAYS = 20, 10  # 200 rows per table


def group(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[FeatureSchema("amount", "double"), FeatureSchema("kind", "string")],
    )


def events() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "customer_id": c,
                "event_timestamp": T0 + timedelta(days=d),
                "amount": None if (c + d) % 7 == 0 else float(c * 10 + d),
                "kind": "odd" if d % 2 else "even",
            }
            for c in range(1, CUSTOMERS + 1)
            for d in range(DAYS)
        ]
    )


@dataclass
class Env:
    spark: SparkSession
    config: FeatureStoreConfig
    store: HybridFeatureStore
    silver: str


@pytest.fixture(scope="module")
def env(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("routing")
    config = FeatureStoreConfig(
        storage_path=str(root / "store"),
        mode=StoreMode.HYBRID,
        duckdb_threshold_rows=1_000,
        hybrid_threshold_rows=1_000,
        metadata_cache_ttl_seconds=60,
        virtual_source_paths=(str(root / "silver"),),
    )
    store = HybridFeatureStore(StoreContext.of(config, spark))
    store.register_features(group("gold"))
    store.write_features("gold", events())
    silver = str(root / "silver")
    spark.createDataFrame(events()).write.format("delta").save(silver)
    store.define_virtual_features(
        group("by_duck"),
        f"SELECT customer_id, event_timestamp, amount * 2 AS amount, kind "
        f"FROM delta_scan('{silver}')",
        engine="duckdb",
    )
    store.define_virtual_features(
        group("by_spark"),
        f"SELECT customer_id, event_timestamp, amount * 2 AS amount, kind FROM delta.`{silver}`",
    )
    yield Env(spark, config, store, silver)


def entities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 2, 5, 30],
            "event_timestamp": [T0 + timedelta(days=d, hours=6) for d in (0, 3, 9, -1, 4)],
            "label": [1, 0, 1, 0, 1],
        }
    )


def test_explain_names_the_engine_and_why(env: Env) -> None:
    small = env.store.explain("gold.*", entity_ids=[1, 2])["gold"]
    assert (small.engine, small.strategy) == ("duckdb", Strategy.MATERIALIZED)
    assert small.gold_estimate is not None and 0 < (small.gold_estimate.rows or 0) <= 200
    rows = small.gold_estimate.rows
    assert small.engine_reason == f"{rows} estimated rows < duckdb_threshold_rows 1,000"
    assert small.to_dict()["engine"] == "duckdb"
    big = HybridFeatureStore(
        StoreContext.of(env.config.replace(duckdb_threshold_rows=100), env.spark)
    )
    decision = big.explain("gold.*")["gold"]
    assert (decision.engine, decision.engine_reason) == (
        "spark",
        "200 estimated rows >= duckdb_threshold_rows 100",
    )
    virtual = env.store.explain("by_duck.*", [1])["by_duck"]
    assert (virtual.strategy, virtual.engine) == (Strategy.VIRTUAL, "duckdb")
    spark_sql = env.store.explain("by_spark.*", [1])["by_spark"]
    assert spark_sql.engine == "spark"
    assert spark_sql.engine_reason == (
        "DuckDB cannot read group 'by_spark': its virtual query is spark SQL"
    )
    forced = env.store.explain("by_spark.*", [1], engine="duckdb")["by_spark"]
    assert forced.engine == "spark" and "cannot serve" in forced.engine_reason
    entity_read = env.store.explain("gold.*", entities(), engine="spark")["gold"]
    assert entity_read.engine_reason == "engine='spark' was requested"


def test_pandas_reads_agree_across_engines(env: Env) -> None:
    for refs in ("gold.*", "by_duck.*", ["gold.amount", "by_duck.kind"]):
        duck = env.store.latest_pandas(ReadRequest.latest(refs), [1, 2, 7, 99], engine="duckdb")
        spark = env.store.latest_pandas(ReadRequest.latest(refs), [1, 2, 7, 99], engine="spark")
        assert (
            duck.sort_values("customer_id")
            .reset_index(drop=True)
            .equals(spark.sort_values("customer_id").reset_index(drop=True))
        ), refs
        assert len(duck) == 3
        history_duck = env.store.historical_pandas(
            entities(), ReadRequest.historical(refs), engine="auto"
        )
        history_spark = env.store.historical_pandas(
            entities(), ReadRequest.historical(refs), engine="spark"
        )
        _same_rows(history_duck, history_spark)
    engines = [m.engine for m in env.store.metrics()[-4:]]
    assert engines == ["duckdb", "duckdb", "spark", "spark"]


def _same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    order = ["customer_id", "event_timestamp"]
    a = left.sort_values(order).reset_index(drop=True).astype(object)
    b = right.sort_values(order).reset_index(drop=True).astype(object)
    assert a.where(a.notna(), None).values.tolist() == b.where(b.notna(), None).values.tolist()


def test_engine_errors(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedOperationError, match="by_spark"):
        env.store.latest_pandas(ReadRequest.latest("by_spark.*"), [1], engine="duckdb")
    with pytest.raises(FeatureStoreError, match="not a read engine"):
        env.store.latest_pandas(ReadRequest.latest("gold.*"), [1], engine="velox")
    monkeypatch.setitem(sys.modules, "duckdb", None)
    store = HybridFeatureStore(StoreContext.of(env.config, env.spark))
    decision = store.explain("gold.*", [1])["gold"]
    assert decision.engine_reason == "duckdb is not installed (pip install 'featurelake[duckdb]')"
    assert len(store.latest_pandas(ReadRequest.latest("gold.*"), [1])) == 1  # Spark answers
    with pytest.raises(DependencyNotInstalledError, match=r"featurelake\[duckdb\]"):
        store.latest_pandas(ReadRequest.latest("gold.*"), [1], engine="duckdb")


SERVE_WITHOUT_SPARK = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from featurelake.config import FeatureStoreConfig
    from featurelake.serving.store import FeatureStore

    config = FeatureStoreConfig.from_dict(json.loads(sys.argv[1]))
    store = FeatureStore(config)
    latest = store.get_features_pandas(["gold.amount", "by_duck.kind"], [1, 2, 7])
    entities = pd.DataFrame(json.loads(sys.argv[2]))
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"])
    history = store.get_historical_features_pandas(entities, "gold.*")
    import pyspark

    def plain(frame):
        return frame.astype(object).where(frame.notna(), None).values.tolist()

    print(json.dumps({
        "spark_started": pyspark.SparkContext._active_spark_context is not None,
        "engines": [m.engine for m in store.hybrid.metrics()],
        "latest": plain(latest.sort_values("customer_id")),
        "history": plain(history),
    }, default=str))
    """
)


def test_a_serving_process_answers_small_reads_without_spark(env: Env, tmp_path: Path) -> None:
    config = {
        "storage_path": env.config.storage_path,
        "mode": "HYBRID",
        "duckdb_threshold_rows": 1_000,
    }
    rows = entities().to_json(orient="records", date_format="iso")
    script = tmp_path / "serve.py"
    script.write_text(SERVE_WITHOUT_SPARK)
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(config), rows],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["spark_started"] is False
    assert answer["engines"] == ["duckdb", "duckdb", "duckdb"]
    facade = FeatureStore(env.config, env.spark)
    latest = facade.get_features_pandas(["gold.amount", "by_duck.kind"], [1, 2, 7], engine="spark")
    assert answer["latest"] == plain(latest.sort_values("customer_id"))
    history = facade.get_historical_features_pandas(entities(), "gold.*", engine="spark")
    assert sorted(map(str, answer["history"])) == sorted(map(str, plain(history)))


def plain(frame: pd.DataFrame) -> list[list[object]]:
    """Rows as JSON would carry them: nulls as None, other values as text."""
    rows = frame.astype(object).where(frame.notna(), None).values.tolist()
    return json.loads(json.dumps(rows, default=str))
