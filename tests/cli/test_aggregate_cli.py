"""`featurelake aggregate`: window values of an aggregation group from the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from featurelake.cli import app
from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

pytestmark = pytest.mark.spark

T0 = datetime(2024, 2, 1)


def test_aggregate_writes_snapshots_and_refuses_bad_options(
    spark: SparkSession, tmp_path: Path
) -> None:
    storage = tmp_path / "store"
    config = tmp_path / "featurelake.yaml"
    config.write_text(
        yaml.safe_dump(
            {"storage_path": str(storage), "spark_master": "local[1]", "retry_backoff_ms": 20}
        )
    )
    store = MaterializedFeatureStore(
        StoreContext.of(FeatureStoreConfig(storage_path=str(storage)), spark)
    )
    store.register_features(
        FeatureGroupSchema(
            "orders",
            ["order_id"],
            [{"name": "user_id", "type": "bigint"}, {"name": "amount", "type": "double"}],
        )
    )
    store.register_features(
        FeatureGroupSchema.from_dict(
            {
                "name": "user_spend",
                "entity_keys": ["user_id"],
                "event_source": "orders",
                "aggregations": [{"column": "amount", "function": "sum", "windows": ["2d"]}],
            }
        )
    )
    store.write_features(
        "orders",
        spark.createDataFrame(
            [(1, T0, 7, 10.0), (2, T0 + timedelta(days=1), 7, 5.0), (3, T0, 8, 1.0)],
            "order_id bigint, event_timestamp timestamp, user_id bigint, amount double",
        ),
    )
    runner = CliRunner()
    base = ["--config", str(config)]
    one = runner.invoke(
        app, [*base, "aggregate", "user_spend", "--as-of", "2024-02-02T12:00", "--json"]
    )
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["rows_written"] == 2
    many = runner.invoke(
        app,
        [
            *base,
            "aggregate",
            "user_spend",
            "--start",
            "2024-02-03",
            "--end",
            "2024-02-05",
            "--every",
            "1d",
        ],
    )
    assert many.exit_code == 0, many.output
    assert "window rows written" in many.stdout
    rows = {
        (r["user_id"], r["event_timestamp"]): r["amount_sum_2d"]
        for r in store.read_table("user_spend").collect()
    }
    assert rows.get((7, datetime(2024, 2, 2, 12))) == 15.0, rows
    assert rows[(7, datetime(2024, 2, 3))] == 5.0  # the T0 order is exactly 2d old: out
    assert rows[(7, datetime(2024, 2, 4))] is None  # the day-2 order is exactly 2d old: out
    assert rows[(8, datetime(2024, 2, 2, 12))] == 1.0 and len(rows) == 6
    bad = runner.invoke(app, [*base, "aggregate", "user_spend", "--start", "2024-02-01"])
    assert bad.exit_code == 2 and "--end" in bad.output
    plain = runner.invoke(app, [*base, "aggregate", "orders"])
    assert plain.exit_code == 2 and "has no aggregations" in plain.output
