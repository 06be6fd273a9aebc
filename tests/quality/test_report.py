from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from featurelake.config import FeatureStoreConfig
from featurelake.quality import attach_quality, drift_history, statistics_history
from featurelake.quality.report import write_report
from featurelake.schema import FeatureGroupSchema
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

NOW = datetime(2024, 3, 1, 12)
SCHEMA = FeatureGroupSchema.from_dict(
    {
        "name": "payments",
        "description": "Card payments per customer.",
        "entity_keys": ["customer_id"],
        "freshness": "1d",
        "features": [
            {"name": "amount", "type": "double"},
            {"name": "items", "type": "int"},
            {"name": "method", "type": "string"},
        ],
        "checks": {
            "on_write": "warn",
            "rules": [
                {"type": "max_null_rate", "feature": "amount", "max_rate": 0.1},
                {"type": "sql", "name": "items_positive", "expr": "items > 0"},
            ],
        },
    }
)


def batch(n: int, day: int, shift: float, null_rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 20.0 + shift, n)
    amount[rng.random(n) < null_rate] = np.nan
    return pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype="int64"),
            "event_timestamp": [NOW - timedelta(days=day, minutes=i) for i in range(n)],
            "amount": amount,
            "items": rng.integers(1, 6, n).astype("int32"),
            "method": rng.choice(
                ["card", "wallet", "transfer"], n, p=[0.6, 0.3 - shift / 200, 0.1 + shift / 200]
            ),
        }
    )


def test_report_from_writes(
    spark: SparkSession, store_config: FeatureStoreConfig, tmp_path: Path
) -> None:
    store = MaterializedFeatureStore(StoreContext.of(store_config, spark))
    store.register_features(SCHEMA)
    attach_quality(store)
    store.write_features("payments", batch(300, 3, 0.0, 0.02, 1))
    store.write_features("payments", batch(300, 2, 0.0, 0.03, 2), mode="overwrite")
    last = store.write_features("payments", batch(300, 0, 30.0, 0.2, 3), mode="overwrite")
    stats = statistics_history(store.registry, "payments", 1)
    assert list(stats)[-1] == last.delta_version and len(stats) == 3
    drifts = drift_history(store.registry, "payments", 1)
    assert len(drifts) == 2 and "amount" in drifts[-1].drifted

    page = write_report(store, "payments", tmp_path / "out", now=NOW)
    text = page.read_text()
    assert page.name == "payments_v1_quality.html"
    for needle in ("payments", "amount", "method", "<svg", "Drift over versions", "max_null_rate"):
        assert needle in text
    assert "http" not in text.replace("http-equiv", "")  # self-contained
    data = json.loads(page.with_suffix(".json").read_text())
    assert data["latest"]["delta_version"] == last.delta_version
    assert data["freshness"]["fresh"] is True
    assert data["last_check"]["passed"] is False
    assert data["drift"][-1]["drifted"] == drifts[-1].drifted
    assert set(data["null_rate_by_version"]) == {str(v) for v in stats}
