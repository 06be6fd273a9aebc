"""The same store on s3:// (a local SeaweedFS server) against local disk, in one run.

    .venv/bin/python benchmarks/bench_storage.py [--rows 200000] [--training-rows 2000]
                                                 [--entities 100] [--repeat 5]

A SeaweedFS server (`weed server -s3`, built by the set-up) is started on loopback. Two stores
get the same Gold group of `--rows` events (written once each with Spark): one in a local
folder, one on `s3://`. Timed on each (median of `--repeat` runs after one warm-up):

- a point-in-time training set of `--training-rows` entity rows (Spark, written to `noop`);
- `get_features_pandas` for `--entities` customers on DuckDB (delta-rs reads the Delta table);
- a registry read (`list_groups` with the cache off: delta-rs reads the registry table).

Prints the medians in milliseconds, the ratio s3 / local of each, and the S3 requests one run
of each made (by type, from the server's metrics).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.registry import Registry
from featurelake.s3_server import LocalS3Server
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.serving.store import FeatureStore
from featurelake.session import get_spark

EVENTS_PER_ENTITY = 10
T0 = datetime(2024, 1, 1)
REFS = ["activity.amount", "activity.visits", "activity.channel"]
BUCKET = "bench"
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


def write_gold(store: FeatureStore, rows: int) -> None:
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
    store.write_features("activity", frame.repartitionByRange(4, "customer_id"))


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def requests_of(server: LocalS3Server, action: Callable[[], object]) -> dict[str, int]:
    """S3 requests one run of `action` made, by type."""
    before = server.request_counts()
    action()
    after = server.request_counts()
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) > before.get(k, 0)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--training-rows", type=int, default=2_000)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_storage_"))
    server = LocalS3Server.start(root / "seaweedfs")
    try:
        os.environ.update(server.environment())
        server.create_bucket(BUCKET)
        base = {
            "duckdb_threshold_rows": args.rows * 10,
            "spark_master": "local[2]",
            "spark_shuffle_partitions": 4,
            "metadata_cache_ttl_seconds": 0,
        }
        configs = {
            "local": FeatureStoreConfig.from_dict({**base, "storage_path": str(root / "store")}),
            "s3": FeatureStoreConfig.from_dict(
                {
                    **base,
                    "storage_path": f"s3://{BUCKET}/features",
                    "storage": server.settings().to_dict(),
                }
            ),
        }
        spark = get_spark(configs["s3"])  # S3A set up; local paths work the same
        stores = {name: FeatureStore(config, spark) for name, config in configs.items()}
        for store in stores.values():
            write_gold(store, args.rows)
        customers = args.rows // EVENTS_PER_ENTITY
        rng = random.Random(3)
        ids = rng.sample(range(customers), args.entities)
        entity_rows = [
            (rng.randrange(customers), T0 + timedelta(hours=rng.randrange(0, 24 * 12)))
            for _ in range(args.training_rows)
        ]
        entities = spark.createDataFrame(
            entity_rows, "customer_id bigint, event_timestamp timestamp"
        )
        entities.cache().count()

        def operations(name: str) -> dict[str, Callable[[], object]]:
            store, config = stores[name], configs[name]
            return {
                f"training set ({args.training_rows:,} rows, spark)": lambda: (
                    store.get_historical_features(entities, REFS)
                    .write.format("noop")
                    .mode("overwrite")
                    .save()
                ),
                f"get_features {args.entities} entities (duckdb)": lambda: (
                    store.get_features_pandas(REFS, ids, engine="duckdb")
                ),
                "registry read (list_groups)": lambda: Registry(config).list_groups(),
            }

        same = (
            stores["local"]
            .get_features_pandas(REFS, ids, engine="duckdb")
            .sort_values("customer_id")
            .reset_index(drop=True)
            .equals(
                stores["s3"]
                .get_features_pandas(REFS, ids, engine="duckdb")
                .sort_values("customer_id")
                .reset_index(drop=True)
            )
        )
        print(
            f"Gold table: {args.rows:,} rows; SeaweedFS on loopback; same rows from both "
            f"stores: {same}"
        )
        print("median ms (after one warm-up):")
        local_ops, s3_ops = operations("local"), operations("s3")
        for what in local_ops:
            local_ms = median_ms(local_ops[what], args.repeat)
            s3_ms = median_ms(s3_ops[what], args.repeat)
            requests = requests_of(server, s3_ops[what])
            counted = ", ".join(f"{k} {v}" for k, v in sorted(requests.items())) or "n/a"
            print(
                f"  {what:<42} local {local_ms:8.1f}  s3 {s3_ms:8.1f}  "
                f"s3/local {s3_ms / local_ms:5.1f}x  S3 requests: {sum(requests.values())} "
                f"({counted})"
            )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
