"""Small offline reads on DuckDB versus Spark, over the same Gold Delta table.

    .venv/bin/python benchmarks/bench_duckdb.py [--rows 1000000] [--files 8] [--entities 100]
                                                [--training-rows 1000] [--repeat 7]

A Gold group of `--rows` events (10 per customer, `--files` files with disjoint key ranges) is
written once with Spark. Two requests are timed, through the `FeatureStore` pandas reads with
`engine="duckdb"` and `engine="spark"` (the same rows come back either way):

- `get_features_pandas` for `--entities` customers (latest values);
- `get_historical_features_pandas` for a `--training-rows`-row entity frame (point in time).

Warm: in this process, every session already up (median of `--repeat` runs after one warm-up).
Cold: a new Python process per engine that opens the store and makes the two requests; its
wall time from start to exit, and the time of its first request (for Spark that includes
starting the session, as a feature server or a notebook without a cluster would).

Prints medians in milliseconds and the ratio Spark / DuckDB of each.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.serving.store import FeatureStore
from featurelake.session import get_spark

EVENTS_PER_ENTITY = 10
T0 = datetime(2024, 1, 1)
REFS = ["activity.amount", "activity.visits", "activity.channel"]

GROUP = FeatureGroupSchema(
    name="activity",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    ttl="30d",
    features=[
        FeatureSchema("amount", "double"),
        FeatureSchema("visits", "bigint"),
        FeatureSchema("channel", "string"),
    ],
)

COLD = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import pandas as pd
    from featurelake.config import FeatureStoreConfig
    from featurelake.serving.store import FeatureStore

    args = json.loads(sys.argv[1])
    store = FeatureStore(FeatureStoreConfig.from_dict(args["config"]))
    entities = pd.read_parquet(args["entities"])
    first = time.perf_counter()
    store.get_features_pandas(args["refs"], args["ids"], engine=args["engine"])
    first = time.perf_counter() - first
    store.get_historical_features_pandas(entities, args["refs"], engine=args["engine"])
    total = time.perf_counter() - started
    print(json.dumps({"first_ms": first * 1000, "total_ms": total * 1000}))
    """
)


def write_gold(store: FeatureStore, rows: int, files: int) -> None:
    spark = store.offline.spark
    frame = spark.range(rows).select(
        (F.col("id") / EVENTS_PER_ENTITY).cast("bigint").alias("customer_id"),
        (F.lit(T0) + F.make_interval(days=(F.col("id") % EVENTS_PER_ENTITY).cast("int"))).alias(
            "event_timestamp"
        ),
        (F.rand(7) * 100).alias("amount"),
        (F.col("id") % 13).alias("visits"),
        F.when(F.col("id") % 3 == 0, "web").otherwise("store").alias("channel"),
    )
    store.register_features(GROUP)
    store.write_features("activity", frame.repartitionByRange(files, "customer_id"))


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cold_run(config: dict[str, object], engine: str, ids: list[int], entities: Path) -> dict:
    script = json.dumps(
        {"config": config, "engine": engine, "refs": REFS, "ids": ids, "entities": str(entities)}
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD, script], capture_output=True, text=True, check=True
    )
    wall = (time.perf_counter() - started) * 1000
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_ms": wall, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--training-rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_duckdb_"))
    try:
        config_values: dict[str, object] = {
            "storage_path": str(root / "store"),
            "duckdb_threshold_rows": args.rows * 10,
            "spark_master": "local[2]",
            "spark_shuffle_partitions": 4,
        }
        config = FeatureStoreConfig.from_dict(config_values)
        spark = get_spark(config)
        store = FeatureStore(config, spark)
        write_gold(store, args.rows, args.files)
        customers = args.rows // EVENTS_PER_ENTITY
        rng = random.Random(3)
        ids = rng.sample(range(customers), args.entities)
        entities = pd.DataFrame(
            {
                "customer_id": [rng.randrange(customers) for _ in range(args.training_rows)],
                "event_timestamp": [
                    T0 + timedelta(hours=rng.randrange(0, 24 * 12))
                    for _ in range(args.training_rows)
                ],
                "label": [rng.random() for _ in range(args.training_rows)],
            }
        )
        entity_file = root / "entities.parquet"
        entities.to_parquet(entity_file)

        print(
            f"Gold table: {args.rows:,} rows in {args.files} files; {args.entities} entities; "
            f"{args.training_rows:,}-row training set"
        )
        warm = {}
        for engine in ("duckdb", "spark"):
            warm[engine] = (
                median_ms(
                    lambda e=engine: store.get_features_pandas(REFS, ids, engine=e), args.repeat
                ),
                median_ms(
                    lambda e=engine: store.get_historical_features_pandas(entities, REFS, engine=e),
                    args.repeat,
                ),
            )
        same_latest = (
            store.get_features_pandas(REFS, ids, engine="duckdb")
            .sort_values("customer_id")
            .reset_index(drop=True)
            .equals(
                store.get_features_pandas(REFS, ids, engine="spark")
                .sort_values("customer_id")
                .reset_index(drop=True)
            )
        )
        print(f"same latest rows from both engines: {same_latest}")
        print("warm (session up), median ms:")
        for i, what in enumerate(("get_features 100 entities", "training set")):
            duck, spark_ms = warm["duckdb"][i], warm["spark"][i]
            print(
                f"  {what:<28} duckdb {duck:8.1f}  spark {spark_ms:8.1f}  "
                f"spark/duckdb {spark_ms / duck:6.1f}x"
            )
        cold = {e: cold_run(config_values, e, ids, entity_file) for e in ("duckdb", "spark")}
        print("cold (new process: imports, store, first get_features, training set), ms:")
        for key, what in (("first_ms", "first get_features"), ("wall_ms", "process wall time")):
            duck, spark_ms = cold["duckdb"][key], cold["spark"][key]
            print(
                f"  {what:<28} duckdb {duck:8.1f}  spark {spark_ms:8.1f}  "
                f"spark/duckdb {spark_ms / duck:6.1f}x"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
