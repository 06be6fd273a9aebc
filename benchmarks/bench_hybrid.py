"""The hybrid router: decision time against table size, and small reads virtual vs materialized.

    .venv/bin/python benchmarks/bench_hybrid.py [--sizes 1000000,10000000] [--files 8]
                                                [--entities 100] [--repeat 15]

1. Router decision time (`HybridFeatureStore.explain` for a request of `--entities` ids) on
   Gold tables of each size, written in `--files` files with disjoint key ranges. Each group
   also has a virtual definition over its own Gold table, so a decision reads two estimates
   and the registry. Estimates come from the Delta log (delta-rs), so the time should not grow
   with the size: the ratio largest / smallest is printed (target: about 1x). A Spark
   `count()` of the same request on the largest table (what the router never does) is the
   baseline it is compared with.
2. Read latency of a small request (`--entities` ids, `get_features(...).collect()`) on a
   group of the smallest size, read virtually (a query over a raw Silver table: cents to
   amount, a status filter) and from its Gold table (the same rows, materialized).

Prints medians in milliseconds and the ratios.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.session import get_spark
from featurelake.stores.base import StoreContext
from featurelake.stores.hybrid import HybridFeatureStore

EVENTS_PER_ENTITY = 10
T0 = datetime(2024, 1, 1)


def group(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        entity_keys=["customer_id"],
        entity_key_types={"customer_id": "bigint"},
        features=[FeatureSchema("amount", "double"), FeatureSchema("visits", "bigint")],
    )


def gold_rows(spark: SparkSession, rows: int, files: int) -> DataFrame:
    """`rows` events, EVENTS_PER_ENTITY per customer, range-partitioned into `files` parts."""
    frame = spark.range(rows).select(
        (F.col("id") / EVENTS_PER_ENTITY).cast("bigint").alias("customer_id"),
        (F.lit(T0) + F.make_interval(days=(F.col("id") % EVENTS_PER_ENTITY).cast("int"))).alias(
            "event_timestamp"
        ),
        (F.rand(7) * 100).alias("amount"),
        (F.col("id") % 13).alias("visits"),
    )
    return frame.repartitionByRange(files, "customer_id")


def silver_rows(spark: SparkSession, rows: int, files: int) -> DataFrame:
    """Raw events: amounts in cents, a status column the virtual query filters on."""
    return (
        spark.range(rows)
        .select(
            (F.col("id") / EVENTS_PER_ENTITY).cast("bigint").alias("customer_id"),
            (F.lit(T0) + F.make_interval(days=(F.col("id") % EVENTS_PER_ENTITY).cast("int"))).alias(
                "ts"
            ),
            (F.rand(11) * 10_000).cast("bigint").alias("amount_cents"),
            (F.col("id") % 13).alias("visits"),
            F.when(F.col("id") % 50 == 0, "void").otherwise("ok").alias("status"),
        )
        .repartitionByRange(files, "customer_id")
    )


def median_ms(action: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="featurelake-bench-hybrid-"))
    config = FeatureStoreConfig(
        storage_path=str(work / "store"),
        spark_master="local[2]",
        spark_shuffle_partitions=4,
        spark_conf={"spark.driver.memory": "3g"},
        hybrid_threshold_rows=100_000,
        metadata_cache_ttl_seconds=600,
    )
    spark = get_spark(config)
    store = HybridFeatureStore(StoreContext.of(config, spark), persist_metrics=False)
    rng = random.Random(3)
    try:
        print(
            f"store: {work}  files per table: {args.files}  entities per request: {args.entities}"
        )
        requests: dict[int, list[int]] = {}
        for size in sizes:
            name = f"gold_{size}"
            started = time.perf_counter()
            store.register_features(group(name))
            store.write_features(name, gold_rows(spark, size, args.files), mode="overwrite")
            gold = store.materialized.location(name).path
            store.define_virtual_features(
                group(name),
                f"SELECT customer_id, event_timestamp, amount, visits FROM delta.`{gold}`",
            )
            print(f"  wrote {size:>12,} rows in {time.perf_counter() - started:6.1f}s")
            # 100 customers from the first key range: the request prunes to one file.
            customers = size // EVENTS_PER_ENTITY // args.files
            requests[size] = rng.sample(range(customers), args.entities)
        # Interleaved rounds, so drift in machine load hits every size alike.
        samples: dict[int, list[float]] = {size: [] for size in sizes}
        for round_ in range(args.repeat + 2):
            for size in sizes:
                started = time.perf_counter()
                store.explain(f"gold_{size}.*", requests[size])
                if round_ >= 2:
                    samples[size].append(time.perf_counter() - started)
        decision_ms = {size: statistics.median(samples[size]) * 1000 for size in sizes}
        for size in sizes:
            decision = store.explain(f"gold_{size}.*", requests[size])[f"gold_{size}"]
            gold_estimate = decision.gold_estimate
            assert gold_estimate is not None
            print(
                f"  decision {size:>12,} rows: {decision_ms[size]:8.1f} ms  "
                f"({decision.strategy.value}; Gold estimate {gold_estimate.rows:,} of "
                f"{gold_estimate.rows_total:,} rows in {gold_estimate.files}/"
                f"{gold_estimate.files_total} files)"
            )
        largest, smallest = max(sizes), min(sizes)
        big = store.materialized.read_table(f"gold_{largest}")
        ids = rng.sample(range(largest // EVENTS_PER_ENTITY), args.entities)
        count_ms = median_ms(
            lambda: big.where(F.col("customer_id").isin(ids)).count(), max(3, args.repeat // 3), 1
        )

        # Small reads: virtual (over raw Silver) vs materialized (the same rows in Gold).
        silver = str(work / "silver")
        silver_rows(spark, smallest, args.files).write.format("delta").save(silver)
        spark.read.format("delta").load(silver).createOrReplaceTempView("bench_silver")
        small = "small"
        store.define_virtual_features(
            group(small),
            "SELECT customer_id, ts AS event_timestamp, "
            "CAST(amount_cents AS double) / 100 AS amount, visits "
            "FROM bench_silver WHERE status = 'ok'",
        )
        store.materialize(small)
        ids = rng.sample(range(smallest // EVENTS_PER_ENTITY), args.entities)
        refs = f"{small}.*"
        virtual = store.get_features(refs, ids, strategy="virtual").collect()
        gold = store.get_features(refs, ids, strategy="materialized").collect()
        assert sorted(map(tuple, virtual)) == sorted(map(tuple, gold)), "results differ"
        reads = max(5, args.repeat // 2)
        virtual_ms = median_ms(
            lambda: store.get_features(refs, ids, strategy="virtual").collect(), reads
        )
        gold_ms = median_ms(
            lambda: store.get_features(refs, ids, strategy="materialized").collect(), reads
        )
        routed = store.explain(refs, ids)[small]

        print()
        print("router decision (median of explain calls)")
        for size in sizes:
            print(f"  {size:>12,} rows  {decision_ms[size]:8.1f} ms")
        growth = decision_ms[largest] / decision_ms[smallest]
        print(f"  ratio {largest:,} / {smallest:,} rows: {growth:.2f}x")
        print(
            f"  Spark count() of the same request on {largest:,} rows: {count_ms:8.1f} ms "
            f"({count_ms / decision_ms[largest]:.1f}x the decision)"
        )
        print(f"small read, {args.entities} entities, {smallest:,}-row group (median of {reads})")
        print(f"  virtual (query over Silver)   {virtual_ms:8.1f} ms")
        print(f"  materialized (Gold table)     {gold_ms:8.1f} ms")
        print(f"  ratio virtual / materialized: {virtual_ms / gold_ms:.2f}x")
        print(f"  the router picks: {routed.strategy.value} ({routed.reason})")
    finally:
        spark.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
