"""One FeatureStore in every mode: the same calls, entity ids in every shape, engines that
give the same rows, modes that mean something, and virtual groups reachable from every entry
point (CLI, job, pipeline node)."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig, StoreMode
from featurelake.errors import SchemaValidationError
from featurelake.pipeline.nodes import read_features_node
from featurelake.schema import FeatureGroupSchema, FeatureSchema

pytest.importorskip("duckdb")
pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 1)
PROFILE = FeatureGroupSchema(
    name="profile",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    timestamp_key="event_timestamp",
    ttl="2d",
    features=[FeatureSchema("spend", "double"), FeatureSchema("tier", "string")],
    composites=[{"name": "spend_x2", "expression": "spend * 2"}],
)
SILVER = FeatureGroupSchema(
    name="silver_spend",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    timestamp_key="event_timestamp",
    features=[FeatureSchema("amount", "double")],
)


def rows(frame: Any, order: list[str]) -> list[tuple[Any, ...]]:
    pandas = frame if isinstance(frame, pd.DataFrame) else frame.toPandas()
    ordered = pandas[sorted(pandas.columns)].sort_values(order).astype(object)
    return [tuple(r) for r in ordered.where(ordered.notna(), None).itertuples(index=False)]


@pytest.fixture(scope="module")
def stores(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One store folder, opened in each mode; `profile` in Gold, `silver_spend` virtual (over
    a Delta folder) and also materialized once."""
    folder = tmp_path_factory.mktemp("one-store")
    config = FeatureStoreConfig(storage_path=str(folder / "store"), metadata_cache_ttl_seconds=60)
    store = FeatureStore(config, spark)
    store.register_features(PROFILE)
    events = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 3, 4],
            "event_timestamp": [T0 + timedelta(hours=h) for h in (1, 30, 2, 5, 3, 4)],
            "spend": [10.0, None, 20.0, 21.0, 30.0, None],
            "tier": ["a", "b", None, "c", "a", "d"],
        }
    )
    store.write_features("profile", events)
    silver_path = folder / "silver"
    spark.createDataFrame(
        pd.DataFrame(
            {
                "customer_id": [1, 2, 3],
                "event_timestamp": [T0 + timedelta(hours=h) for h in (1, 2, 3)],
                "amount": [5.0, 6.0, 7.0],
            }
        )
    ).write.format("delta").save(str(silver_path))
    store.define_virtual_features(
        SILVER, f"SELECT customer_id, event_timestamp, amount FROM delta.`{silver_path}`"
    )
    store.materialize("silver_spend")
    modes = {mode: FeatureStore(config.replace(mode=mode), spark) for mode in StoreMode}
    return {"store": store, "config": config, "folder": folder, "modes": modes}


def test_entity_ids_in_every_shape_give_the_same_rows(stores: dict[str, Any]) -> None:
    store: FeatureStore = stores["store"]
    as_list = rows(store.get_features("profile.*", [1, 2]), ["customer_id"])
    assert [r[0] for r in as_list] == [1, 2]
    shapes = [
        {"customer_id": [1, 2]},  # a dict of columns (once misread as one row holding a list)
        [{"customer_id": 1}, {"customer_id": 2}],
        [(1,), (2,)],
        (1, 2),
        pd.DataFrame({"customer_id": [2, 1]}),
    ]
    for shape in shapes:
        assert rows(store.get_features("profile.*", shape), ["customer_id"]) == as_list, shape
        pandas = store.get_features("profile.*", shape, to_pandas=True, engine="duckdb")
        assert rows(pandas, ["customer_id"]) == as_list, shape
    one = rows(store.get_features("profile.*", {"customer_id": 2}), ["customer_id"])
    assert one == as_list[1:]
    for bad in ({"customer_id": [1, 2], "other": 3}, object(), {"customer_id": [1], "x": [1, 2]}):
        with pytest.raises(SchemaValidationError) as caught:
            store.get_features("profile.*", bad)
        assert "dict of columns" in str(caught.value) or "lengths" in str(caught.value)


def test_spark_and_duckdb_run_the_same_request(stores: dict[str, Any]) -> None:
    store: FeatureStore = stores["store"]
    ids = {"customer_id": [1, 2, 3, 4, 5]}
    for when in (None, T0 + timedelta(hours=4), T0 + timedelta(hours=40)):
        spark_rows = store.get_features("profile.*", ids, when, engine="spark", to_pandas=True)
        duck_rows = store.get_features("profile.*", ids, when, engine="duckdb", to_pandas=True)
        assert rows(spark_rows, ["customer_id"]) == rows(duck_rows, ["customer_id"]), when
    entities = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3, 4, 9],
            "event_timestamp": [T0 + timedelta(hours=h) for h in (2, 80, 6, 3, 4, 5)],
            "row_id": range(6),
        }
    )
    for options in ({}, {"ttl": "1d"}, {"fill": "last_non_null"}, {"ttl": "3h", "fill": "none"}):
        by_spark = store.get_historical_features(
            entities, "profile.*", engine="spark", to_pandas=True, **options
        )
        by_duck = store.get_historical_features(
            entities, "profile.*", engine="duckdb", to_pandas=True, **options
        )
        assert rows(by_spark, ["row_id"]) == rows(by_duck, ["row_id"]), options
    # composites: both engines evaluate the same compiled expression on the same stored rows
    composite = ["profile.spend", "profile.spend_x2"]
    by_spark = store.get_historical_features(entities, composite, engine="spark", to_pandas=True)
    by_duck = store.get_historical_features(entities, composite, engine="duckdb", to_pandas=True)
    assert list(by_duck.columns) == list(by_spark.columns)
    assert rows(by_spark, ["row_id"]) == rows(by_duck, ["row_id"])
    doubled = {r["row_id"]: r for r in by_duck.to_dict("records")}
    assert doubled[0]["spend_x2"] == 20.0
    latest_spark = store.get_features(composite, ids, engine="spark", to_pandas=True)
    latest_duck = store.get_features(composite, ids, engine="duckdb", to_pandas=True)
    assert list(latest_duck.columns) == ["customer_id", "event_timestamp", "spend", "spend_x2"]
    assert rows(latest_spark, ["customer_id"]) == rows(latest_duck, ["customer_id"])
    for spend, doubled in zip(latest_duck["spend"], latest_duck["spend_x2"], strict=True):
        assert (pd.isna(spend) and pd.isna(doubled)) or doubled == 2 * spend


def test_explain_gives_the_plan_both_engines_run(stores: dict[str, Any]) -> None:
    store: FeatureStore = stores["store"]
    refs = ["profile.spend", "profile.spend_x2"]
    plan = store.explain(refs, {"customer_id": [1, 2]}, engine="duckdb")
    assert plan.engine is not None and plan.engine.engine.value == "duckdb"
    assert [s.name for s in plan.schemas] == ["profile"]
    assert plan.output_columns == {"profile.spend": "spend"}  # the composite's input
    described = plan.to_dict()
    assert described["composites"] == ["profile.spend_x2"]
    assert described["groups"] == [{"group": "profile", "version": 1, "features": ["spend"]}]
    assert plan["profile"].engine == "duckdb"  # the plan is also group -> decision
    assert store.explain(refs, [1], engine="spark").engine.engine.value == "spark"


def test_one_signature_in_every_mode_and_modes_that_differ(stores: dict[str, Any]) -> None:
    modes: dict[StoreMode, FeatureStore] = stores["modes"]
    strategies = {}
    for mode, store in modes.items():
        # the same call, the same arguments, in every mode
        pinned = store.get_features("profile.*", [1], as_of_version=1, to_pandas=True)
        assert list(pinned["customer_id"]) == [1]
        decision = store.explain("silver_spend.*", [1, 2])["silver_spend"]
        strategies[mode] = decision.strategy.value
    assert strategies[StoreMode.MATERIALIZED] == "materialized"
    assert strategies[StoreMode.VIRTUALIZED] == "virtual"
    assert strategies[StoreMode.ONLINE] == "materialized"
    assert strategies[StoreMode.HYBRID] in ("materialized", "virtual")
    assert (
        "VIRTUALIZED"
        in modes[StoreMode.VIRTUALIZED].explain("silver_spend.*")["silver_spend"].reason
    )
    online = modes[StoreMode.ONLINE].explain("profile.*", [1]).engine
    assert online is not None and online.engine.value == "online"
    assert modes[StoreMode.HYBRID].explain("profile.*", [1]).engine.engine.value != "online"


def load_job(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_virtual_group_answers_through_every_entry_point(
    stores: dict[str, Any], spark: SparkSession, tmp_path: Path
) -> None:
    """A group defined only by its query (no Gold table) in the default MATERIALIZED mode."""
    store: FeatureStore = stores["store"]
    folder: Path = stores["folder"]
    only_virtual = FeatureGroupSchema(
        name="virtual_only",
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        timestamp_key="event_timestamp",
        features=[FeatureSchema("amount", "double")],
    )
    store.define_virtual_features(
        only_virtual,
        f"SELECT customer_id, event_timestamp, amount FROM delta.`{folder / 'silver'}`",
    )
    config: FeatureStoreConfig = stores["config"]
    assert config.mode is StoreMode.MATERIALIZED
    node = read_features_node("virtual_only.*", config=config)
    assert rows(node([1, 2]), ["customer_id"]) == [
        (5.0, 1, T0 + timedelta(hours=1)),
        (6.0, 2, T0 + timedelta(hours=2)),
    ]

    labels = tmp_path / "labels.parquet"
    pd.DataFrame(
        {"customer_id": [1, 3], "event_timestamp": [T0 + timedelta(days=1)] * 2}
    ).to_parquet(labels)
    config_file = tmp_path / "featurelake.yaml"
    plain = {
        k: v.value if hasattr(v, "value") else v
        for k, v in vars(config).items()
        if v is not None and k != "spark_conf"
    }
    config_file.write_text(yaml.safe_dump(plain))

    from featurelake.cli.app import run

    out = tmp_path / "cli.parquet"
    code = run(
        [
            *("-c", str(config_file), "training-set", "-e", str(labels)),
            *("-f", "virtual_only.*", "-o", str(out)),
        ]
    )
    assert code == 0
    assert sorted(pd.read_parquet(out)["amount"]) == [5.0, 7.0]

    job_out = tmp_path / "job.parquet"
    code = load_job("training_set").main(
        [
            *("--config", str(config_file), "--entities", str(labels)),
            *("--features", "virtual_only.*", "--out", str(job_out)),
        ]
    )
    assert code == 0
    assert sorted(pd.read_parquet(job_out)["amount"]) == [5.0, 7.0]


def test_online_mode_serves_latest_reads_from_the_online_store(
    stores: dict[str, Any], spark: SparkSession
) -> None:
    """ONLINE answers `get_features(refs, ids)` from the online store; MATERIALIZED from Gold."""
    config: FeatureStoreConfig = stores["config"]
    online = FeatureStore(config.replace(mode="online", enable_online_store=True), spark)
    online.sync_to_online("profile")
    gold: FeatureStore = stores["store"]
    later = pd.DataFrame(
        {
            "customer_id": [2],
            "event_timestamp": [T0 + timedelta(days=3)],
            "spend": [77.0],
            "tier": ["z"],
        }
    )
    gold.write_features("profile", later)  # not synced: the online store still holds 21.0
    served = online.get_features("profile.spend", {"customer_id": [2]}, to_pandas=True)
    assert served["spend"].tolist() == [21.0]
    read = gold.get_features("profile.spend", [2], to_pandas=True)
    assert read["spend"].tolist() == [77.0]
    # a point in time, or a pinned strategy, reads offline in every mode
    before = online.get_features("profile.spend", [2], T0 + timedelta(days=4), to_pandas=True)
    assert before["spend"].tolist() == [77.0]
    online.close()
