"""Feature statistics vs one plain `df.summary()` pass over the same Delta table, same process.

    .venv/bin/python benchmarks/bench_quality.py                  # 2M rows x 20 features
    .venv/bin/python benchmarks/bench_quality.py --rows 10000000 --repeat 3

Writes a group of 15 numerical and 5 categorical features (with nulls) to a Delta table in a
temporary store, then times, on that table:
  1. baseline: `df.summary().collect()` (count, mean, stddev, min, quartiles, max per column);
  2. `featurelake.quality.compute_statistics` (count, nulls, approximate distinct, mean, std,
     min, max, seven quantiles in one aggregation, plus one job for the top values of the five
     categorical features).
Reports the best of --repeat runs of each and the ratio (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable

from featurelake.config import FeatureStoreConfig
from featurelake.quality import compute_statistics
from featurelake.schema import FeatureGroupSchema
from featurelake.session import get_spark

NUMERIC = 15
CATEGORICAL = 5


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench_quality_")
    try:
        config = FeatureStoreConfig(storage_path=root, spark_master="local[2]")
        spark = get_spark(config)
        from pyspark.sql import functions as F

        features = [{"name": f"x{i}", "type": "double"} for i in range(NUMERIC)]
        features += [{"name": f"c{i}", "type": "string"} for i in range(CATEGORICAL)]
        schema = FeatureGroupSchema.from_dict(
            {"name": "bench_quality", "entity_keys": ["id"], "features": features}
        )
        columns = [
            F.col("id"),
            (F.lit(1_700_000_000) + F.col("id")).cast("timestamp").alias("event_timestamp"),
        ]
        for i in range(NUMERIC):
            value = F.randn(seed=i) * (i + 1) + i
            columns.append(
                F.when(F.rand(seed=100 + i) < 0.05, None).otherwise(value).alias(f"x{i}")
            )
        for i in range(CATEGORICAL):
            code = F.floor(F.rand(seed=200 + i) * (5 + 10 * i)).cast("string")
            columns.append(F.concat(F.lit(f"v{i}_"), code).alias(f"c{i}"))
        path = f"{root}/gold/bench_quality"
        started = time.perf_counter()
        spark.range(args.rows).select(*columns).write.format("delta").save(path)
        print(
            f"wrote {args.rows:,} rows x {NUMERIC + CATEGORICAL} features in "
            f"{time.perf_counter() - started:.1f}s"
        )
        table = spark.read.format("delta").load(path)
        table.count()  # warm the file listing and JVM before timing
        baseline = best_of(args.repeat, lambda: table.summary().collect())
        ours = best_of(args.repeat, lambda: compute_statistics(table, schema))
        print(f"df.summary()             : {baseline:7.2f}s")
        print(f"quality statistics       : {ours:7.2f}s")
        print(f"ratio statistics/summary : {ours / baseline:7.2f}x (target <= 1.5x)")
        spark.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
