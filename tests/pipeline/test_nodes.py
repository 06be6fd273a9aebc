"""Pipeline nodes wired into a small DAG, as Kedro or Airflow would call them."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.errors import ConfigurationError, FeatureNotFoundError
from featurelake.examples import retail
from featurelake.pipeline import read_features_node, training_set_node, write_features_node
from featurelake.schema import load_groups
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

REPO = Path(__file__).resolve().parents[2]
GROUPS = load_groups(REPO / "conf" / "features")


@dataclass
class Node:
    """A DAG node as Kedro declares one: a function, named inputs, named outputs."""

    func: Callable[..., Any]
    inputs: Sequence[str]
    outputs: Sequence[str]
    after: Sequence[str] = field(default_factory=tuple)  # outputs it must wait for, unused


def run_dag(nodes: Sequence[Node], catalog: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Run every node once its inputs exist, in dependency order; returns the catalog and the
    order the nodes ran in (by function name)."""
    pending, order = list(nodes), []
    while pending:
        ready = [n for n in pending if all(k in catalog for k in (*n.inputs, *n.after))]
        assert ready, f"cycle or missing input among {[n.func.__name__ for n in pending]}"
        for node in ready:
            result = node.func(*[catalog[name] for name in node.inputs])
            outputs = result if len(node.outputs) > 1 else (result,)
            catalog.update(zip(node.outputs, outputs, strict=True))
            order.append(node.func.__name__)
            pending.remove(node)
    return catalog, order


@pytest.fixture
def config(store_config: FeatureStoreConfig, spark: SparkSession) -> FeatureStoreConfig:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    for group in GROUPS:
        store.register_features(group)
    return store_config


def test_nodes_in_a_feature_pipeline(config: FeatureStoreConfig, spark: SparkSession) -> None:
    profiles = retail.customer_profiles(spark, customers=25, snapshots=2)
    txn = retail.transaction_aggregates(spark, customers=25, days=10)
    labels = retail.label_events(spark, customers=25, rows=30).toPandas()
    refs = ["customer_profile.age", "customer_profile.segment", "transaction_aggregates.*"]

    nodes = [
        Node(write_features_node("customer_profile", config=config), ["raw_profiles"],
             ["profile_write"]),
        Node(write_features_node("transaction_aggregates", mode="merge", config=config),
             ["raw_txn"], ["txn_write"]),
        Node(read_features_node(refs[:2], config=config, as_pandas=True), ["customers"],
             ["latest"], after=["profile_write"]),
        Node(training_set_node(refs, config=config), ["labels"], ["training"],
             after=["profile_write", "txn_write"]),
    ]  # fmt: skip
    catalog, order = run_dag(
        nodes,
        # pandas in, as a Kedro pandas dataset would give it; Spark for the others
        {"raw_profiles": profiles.toPandas(), "raw_txn": txn, "labels": labels,
         "customers": [1, 2, 3]},
    )  # fmt: skip

    assert order[:2] == ["write_customer_profile", "write_transaction_aggregates"]
    write = catalog["profile_write"]
    assert json.loads(json.dumps(write)) == write  # JSON-friendly, fit for Airflow's XCom
    assert write["group"] == "customer_profile" and write["rows_written"] == 50
    assert catalog["txn_write"]["mode"] == "merge"

    latest = catalog["latest"]
    assert isinstance(latest, pd.DataFrame)
    assert sorted(latest["customer_id"]) == [1, 2, 3]
    assert set(latest.columns) == {"customer_id", "event_timestamp", "age", "segment"}

    training = catalog["training"]
    assert training.count() == 30
    assert {"churned", "age", "segment", "txn_count_7d", "last_category"} <= set(training.columns)
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    expected = store.get_historical_features(labels, refs)
    assert sorted(training.collect()) == sorted(expected.collect())


def test_nodes_are_lazy_and_check_arguments_when_built(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    node = write_features_node("customer_profile", config=missing)  # no Spark, no file read
    assert inspect.signature(node).parameters["df"].default is inspect.Parameter.empty
    with pytest.raises(ConfigurationError, match="does not exist"):
        node(pd.DataFrame())
    with pytest.raises(ConfigurationError, match="not a write mode"):
        write_features_node("customer_profile", mode="upsert")
    with pytest.raises(FeatureNotFoundError, match="not a feature reference"):
        read_features_node(["customer_profile..age"])  # a bare name is resolved when read


def test_airflow_style_call_with_a_path_and_a_templated_window(
    config: FeatureStoreConfig, spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PythonOperator(python_callable=node, op_args=[path], op_kwargs={start/end templates})."""
    source = tmp_path / "txn"
    retail.transaction_aggregates(spark, customers=10, days=6).write.parquet(str(source))
    conf_file = tmp_path / "conf" / "featurelake.yaml"
    conf_file.parent.mkdir()
    conf_file.write_text(yaml.safe_dump({"storage_path": config.storage_path}))
    monkeypatch.chdir(tmp_path)  # nodes without a config read conf/featurelake.yaml

    backfill = write_features_node("transaction_aggregates")
    result = backfill(
        str(source), start="2024-01-02T00:00:00+00:00", end="2024-01-04T00:00:00+00:00"
    )
    assert result["mode"] == "backfill"
    table = MaterializedFeatureStore(StoreContext.of(config, spark)).read_table(
        "transaction_aggregates"
    )
    times = [row[0] for row in table.select("event_timestamp").collect()]
    assert times and all(datetime(2024, 1, 2) <= t < datetime(2024, 1, 4) for t in times)

    read = read_features_node("transaction_aggregates.txn_count_7d", point_in_time="2024-01-02")
    assert read().count() == 0  # nothing at or before midnight of the 2nd
    assert read(point_in_time="2024-01-03").count() == len(
        {r.customer_id for r in table.where("event_timestamp < '2024-01-03'").collect()}
    )
