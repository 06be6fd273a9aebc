"""Validated `write_features` against plain Delta writes of the same rows, in one run.

    .venv/bin/python benchmarks/bench_write.py [--rows 1000000] [--repeat 3]

Append: `store.write_features(group, df)` vs `df.write.format("delta").mode("append")`.
Merge: 10% of the rows updated (new values, same keys and times) through
`write_features(..., mode="merge")` vs a plain `MERGE INTO` of the same batch.
The plain writes go to two tables: a bare Delta table, and one created with the Gold table's
own properties (`GOLD_TABLE_PROPERTIES`: the change data feed that the online sync and the
quality tables read), so the second ratio is what validation costs on the same kind of table.
Prints median seconds and the ratio validated / plain (target: at most 1.25x), with the
Spark jobs each write ran and their executor CPU seconds (from the Spark UI's REST API; on a
shared box CPU time is steadier than wall time), and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.gold.delta_ops import GOLD_TABLE_PROPERTIES
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.session import get_spark
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

FEATURES = 8


def group_schema() -> FeatureGroupSchema:
    features = [FeatureSchema(f"f{i}", "double", min_value=0, max_value=1) for i in range(FEATURES)]
    features.append(FeatureSchema("segment", "string", allowed_values=["a", "b", "c", "d"]))
    return FeatureGroupSchema(
        name="bench",
        entity_keys=["entity_id"],
        features=features,
        entity_key_types={"entity_id": "bigint"},
    )


def source_rows(spark: SparkSession, rows: int, seed: int) -> DataFrame:
    columns = [F.rand(seed + i).alias(f"f{i}") for i in range(FEATURES)]
    return spark.range(rows).select(
        F.col("id").alias("entity_id"),
        (F.lit("2024-01-01").cast("timestamp") + F.make_interval(secs=F.col("id") % 86_400)).alias(
            "event_timestamp"
        ),
        *columns,
        F.element_at(F.array(*[F.lit(s) for s in "abcd"]), (F.col("id") % 4 + 1).cast("int")).alias(
            "segment"
        ),
    )


def timed(spark: SparkSession, name: str, action: Callable[[], object]) -> tuple[float, int, float]:
    """Wall seconds, Spark jobs and executor CPU seconds of `action` (run as job group `name`)."""
    context = spark.sparkContext
    context.setJobGroup(name, name)
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    tracker = context.statusTracker()
    jobs = tracker.getJobIdsForGroup(name)
    infos = [tracker.getJobInfo(j) for j in jobs]
    stages = {s for info in infos if info is not None for s in info.stageIds}
    return wall, len(jobs), sum(stage_cpu(spark, s) for s in stages)


def stage_cpu(spark: SparkSession, stage: int) -> float:
    """Executor CPU seconds of a stage's attempts (0 when the UI does not answer)."""
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}"
    try:
        with urllib.request.urlopen(f"{url}/stages/{stage}", timeout=10) as answer:
            attempts = json.load(answer)
    except Exception:
        return 0.0
    return sum(a.get("executorCpuTime", 0) for a in attempts) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="featurelake-bench-write-"))
    config = FeatureStoreConfig(
        storage_path=str(work / "store"),
        spark_master="local[2]",
        spark_shuffle_partitions=4,
        spark_ui_enabled=True,
    )
    load_before = os.getloadavg()
    spark = get_spark(config)
    source = str(work / "source")
    updates = str(work / "updates")
    source_rows(spark, args.rows, seed=1).write.parquet(source)
    # 10% of the rows with new values, same keys and times.
    spark.read.parquet(source).where(F.col("entity_id") % 10 == 0).select(
        "entity_id",
        "event_timestamp",
        *[(F.col(f"f{i}") / 2).alias(f"f{i}") for i in range(FEATURES)],
        "segment",
    ).write.parquet(updates)

    schema = group_schema()
    kinds = ("plain", "plain gold-properties", "validated")
    results: dict[str, list[tuple[float, int, float]]] = {
        f"{name} {kind}": [] for name in ("append", "merge") for kind in kinds
    }
    for run in range(args.repeat):
        store = MaterializedFeatureStore(
            StoreContext.of(config.replace(storage_path=str(work / f"store{run}")), spark)
        )
        store.register_features(schema)
        # Every table exists before the timed writes: the plain ones from an empty write, the
        # Gold one from an empty validated write (its creation is not part of a write's cost).
        store.write_features("bench", spark.read.parquet(source).limit(0))
        plain_path = str(work / f"plain{run}")
        gold_like_path = str(work / f"plain_gold_properties{run}")
        empty = spark.read.parquet(source).limit(0)
        empty = empty.withColumn("_ingested_at", F.current_timestamp())
        empty.write.format("delta").save(plain_path)
        writer = empty.write.format("delta")
        for key, value in GOLD_TABLE_PROPERTIES.items():
            writer = writer.option(key, value)
        writer.save(gold_like_path)

        def plain_append(path: str) -> None:
            spark.read.parquet(source).withColumn(
                "_ingested_at", F.current_timestamp()
            ).write.format("delta").mode("append").save(path)

        def validated_append(s: MaterializedFeatureStore = store) -> None:
            s.write_features("bench", spark.read.parquet(source))

        def plain_merge(path: str) -> None:
            view = f"updates_{uuid.uuid4().hex}"
            spark.read.parquet(updates).withColumn(
                "_ingested_at", F.current_timestamp()
            ).createOrReplaceTempView(view)
            spark.sql(
                f"MERGE INTO delta.`{path}` t USING {view} s "
                "ON t.entity_id = s.entity_id AND t.event_timestamp = s.event_timestamp "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            ).collect()

        def validated_merge(s: MaterializedFeatureStore = store) -> None:
            s.write_features("bench", spark.read.parquet(updates), mode="merge")

        order = [
            ("append", plain_append, validated_append),
            ("merge", plain_merge, validated_merge),
        ]
        for name, plain, validated in order:
            actions: list[tuple[str, Callable[[], object]]] = [
                ("plain", lambda p=plain, t=plain_path: p(t)),
                ("plain gold-properties", lambda p=plain, t=gold_like_path: p(t)),
                ("validated", validated),
            ]
            if run % 2:
                actions.reverse()
            for kind, action in actions:
                key = f"{name} {kind}"
                results[key].append(timed(spark, f"{key} {run}", action))

    print(f"\nwrite_features vs plain Delta, {args.rows:,} rows, median of {args.repeat} runs")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(
        f"{'operation':<10} {'baseline':<22} {'plain s':>9} {'validated s':>12} {'ratio':>7}"
        f" {'jobs':>9} {'plain cpu s':>12} {'valid. cpu s':>13} {'cpu ratio':>10}"
    )
    for name in ("append", "merge"):
        validated_runs = results[f"{name} validated"]
        checked = statistics.median(r[0] for r in validated_runs)
        validated_cpu = statistics.median(r[2] for r in validated_runs)
        for baseline in ("plain", "plain gold-properties"):
            plain_runs = results[f"{name} {baseline}"]
            wall = statistics.median(r[0] for r in plain_runs)
            plain_cpu = statistics.median(r[2] for r in plain_runs)
            jobs = f"{max(r[1] for r in plain_runs)}/{max(r[1] for r in validated_runs)}"
            cpu_ratio = validated_cpu / plain_cpu if plain_cpu else float("nan")
            print(
                f"{name:<10} {baseline:<22} {wall:>9.2f} {checked:>12.2f} {checked / wall:>6.2f}x"
                f" {jobs:>9} {plain_cpu:>12.2f} {validated_cpu:>13.2f} {cpu_ratio:>9.2f}x"
            )
    spark.stop()


if __name__ == "__main__":
    main()
