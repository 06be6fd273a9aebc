"""Windowed aggregations: the one-pass plan against a naive join-and-filter, in one process.

    .venv/bin/python benchmarks/bench_aggregations.py                    # 200k entity x 2M events
    .venv/bin/python benchmarks/bench_aggregations.py --entities 1000000 --events 10000000

Skewed keys (one key holds 20% of the events and of the entity rows), windows 1d / 7d / 30d
with sum, count and avg of one column (9 features). Measures, writing every result to the
`noop` sink:
  1. `window_aggregates` vs a naive join of each entity row to its key's events in the widest
     window, then conditional sums per row (the same semantics, `t - w < ts <= t`);
  2. `window_aggregates` vs one shuffle-sort of the same events and entity rows (the floor of
     any sort-based plan);
  3. daily snapshots (the same entity rows at midnight, a training set's usual label times):
     `window_aggregates` over the events vs over the group's daily tiles (`tile_partials`,
     written to Delta first; their build time is printed too);
  4. a materialization: every key as of one time (not on a tile edge), over the events vs over
     the tiles plus the events of the four tiles that time and its windows' starts fall in.
A naive run still going after `--naive-timeout-factor` x the one-pass time is cancelled and
reported as a lower bound (">= ..."). Helpers (timing, JVM CPU, data columns) are bench_pit's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta

from bench_pit import BASE_EPOCH, JvmCpu, Timing, best, key_column, ratio, run
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.engines.spark.windows import Tiles, WindowOutput, tile_partials, window_aggregates
from featurelake.session import get_spark

KEY = "customer_id"
TS = "event_ts"
WINDOWS = (timedelta(days=1), timedelta(days=7), timedelta(days=30))
FUNCTIONS = ("sum", "count", "avg")
SPAN_SECONDS = 365 * 24 * 3600


def generate(spark: SparkSession, root: str, args: argparse.Namespace) -> None:
    events = spark.range(args.events, numPartitions=args.partitions).select(
        key_column(args.keys, True, 7).alias(KEY),
        F.timestamp_seconds(F.lit(BASE_EPOCH) + (F.rand(17) * SPAN_SECONDS).cast("long")).alias(TS),
        F.when(F.rand(27) > 0.05, F.round(F.rand(28) * 1000, 2)).alias("amount"),
    )
    entities = spark.range(args.entities, numPartitions=args.partitions).select(
        F.col("id").alias("request_id"),
        key_column(args.keys, True, 107).alias(KEY),
        F.timestamp_seconds(F.lit(BASE_EPOCH) + (F.rand(117) * SPAN_SECONDS).cast("long")).alias(
            "ts"
        ),
    )
    events.write.format("delta").mode("overwrite").save(f"{root}/events")
    entities.write.format("delta").mode("overwrite").save(f"{root}/entities")


def write_tiles(spark: SparkSession, root: str) -> Tiles:
    events = spark.read.format("delta").load(f"{root}/events")
    size = timedelta(days=1)  # the gcd of 1d / 7d / 30d
    partials = tile_partials(events, [KEY], TS, outputs(), size)
    partials.write.format("delta").mode("overwrite").save(f"{root}/tiles")
    return Tiles(spark.read.format("delta").load(f"{root}/tiles"), size)


def outputs() -> list[WindowOutput]:
    return [
        WindowOutput(
            f"amount_{f}_{w.days}d", "amount", f, w, None, "bigint" if f == "count" else "double"
        )
        for w in WINDOWS
        for f in FUNCTIONS
    ]


def naive(entity_df: DataFrame, events: DataFrame) -> DataFrame:
    """Join each entity row to every event of its key in the widest window, then aggregate."""
    rows = entity_df.withColumn("_rid", F.monotonically_increasing_id())
    right = events.select(F.col(KEY).alias("_key"), F.col(TS).alias("_ev"), "amount")
    widest = max(WINDOWS)
    joined = rows.join(
        right,
        (rows[KEY] == right["_key"])
        & (right["_ev"] <= rows["ts"])
        & (right["_ev"] > rows["ts"] - F.lit(widest)),
        "left",
    )
    aggregates = []
    for window in WINDOWS:
        inside = F.when(F.col("_ev") > F.col("ts") - F.lit(window), F.col("amount"))
        total = F.sum(inside)
        count = F.count(inside)
        aggregates += [
            total.alias(f"amount_sum_{window.days}d"),
            count.alias(f"amount_count_{window.days}d"),
            (total / count).alias(f"amount_avg_{window.days}d"),
        ]
    return joined.groupBy("_rid", *entity_df.columns).agg(*aggregates).drop("_rid")


def shuffle_sort(entity_df: DataFrame, events: DataFrame) -> DataFrame:
    """The same rows, shuffled by key and sorted by time once."""
    pruned = events.select(KEY, F.col(TS).alias("ts"), "amount")
    rows = entity_df.unionByName(pruned, allowMissingColumns=True)
    return rows.repartition(KEY).sortWithinPartitions(KEY, "ts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=None, help="default: events / 365")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--naive-timeout-factor", type=float, default=11.0)
    parser.add_argument("--skip-naive", action="store_true", help="leave the naive plan out")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    args.keys = args.keys or max(2, args.events // 365)

    with tempfile.TemporaryDirectory(prefix="bench_aggregations_") as root:
        spark = get_spark(
            FeatureStoreConfig(
                storage_path=root,
                spark_master=args.master,
                spark_shuffle_partitions=args.partitions,
                spark_warehouse_dir=f"{root}/warehouse",
                spark_conf={"spark.driver.memory": args.driver_memory},
            )
        )
        print(
            f"entities={args.entities:,} events={args.events:,} keys={args.keys:,} "
            f"(key 0: 20% of both) windows=1d/7d/30d x sum/count/avg master={args.master}"
        )
        started = time.perf_counter()
        generate(spark, root, args)
        print(f"data written to Delta in {time.perf_counter() - started:.1f} s", flush=True)
        entity_df = spark.read.format("delta").load(f"{root}/entities")
        events = spark.read.format("delta").load(f"{root}/events")
        cpu = JvmCpu(spark)

        def variants(entity: DataFrame, rows: DataFrame) -> dict[str, Callable[[], DataFrame]]:
            return {
                "shuffle_sort": lambda: shuffle_sort(entity, rows),
                "windows": lambda: window_aggregates(entity, rows, [KEY], TS, "ts", outputs()),
                "naive": lambda: naive(entity, rows),
            }

        started = time.perf_counter()
        tiles = write_tiles(spark, root)
        print(
            f"daily tiles built and written to Delta in {time.perf_counter() - started:.1f} s "
            f"({tiles.frame.count():,} rows)",
            flush=True,
        )
        snapshots = entity_df.withColumn("ts", F.date_trunc("day", "ts"))

        sample = F.col(KEY) % 10 == 1  # warm the JIT on a sample without the hot key
        for build in variants(entity_df.where(sample), events.where(sample)).values():
            run(spark, build, timeout=60.0)
        builds = variants(entity_df, events)
        timings: dict[str, Timing] = {}
        for name in ("shuffle_sort", "windows", *([] if args.skip_naive else ["naive"])):
            limit = (
                timings["windows"].seconds * args.naive_timeout_factor if name == "naive" else None
            )
            timings[name] = best(spark, builds[name], args.repeat, cpu, limit)
            print(f"  {name}: {str(timings[name]).strip()} s", flush=True)
        print(", ".join(f"{k} {str(v).strip()} s" for k, v in timings.items()))
        ours, floor = timings["windows"], timings["shuffle_sort"]
        print(f"wall: windows/sort {ratio(ours, floor)}", end="")
        print(f", naive/windows {ratio(timings['naive'], ours)}" if "naive" in timings else "")
        if all(t.cpu_seconds is not None for t in timings.values()):
            print(f"JVM CPU: windows/sort {ratio(ours, floor, cpu=True)}", end="")
            naive_cpu = ratio(timings["naive"], ours, cpu=True) if "naive" in timings else ""
            print(f", naive/windows {naive_cpu}" if naive_cpu else "")
        print("targets: naive/windows >= 10x, windows/sort <= 2x")
        hi = events.agg(F.max(TS)).first()[0]  # type: ignore[index]
        as_of = (
            events.select(KEY)
            .distinct()
            .withColumn("ts", F.lit(hi) - F.expr("INTERVAL 90 MINUTES"))
        )

        def over(rows: DataFrame, read: Tiles | None) -> Callable[[], DataFrame]:
            return lambda: window_aggregates(rows, events, [KEY], TS, "ts", outputs(), tiles=read)

        for label, rows in (("daily snapshots", snapshots), ("every key as of one time", as_of)):
            raw = best(spark, over(rows, None), args.repeat, cpu)
            tiled = best(spark, over(rows, tiles), args.repeat, cpu)
            print(
                f"{label}: events {str(raw).strip()} s, tiles {str(tiled).strip()} s, "
                f"events/tiles {ratio(raw, tiled)}, tiles/sort {ratio(tiled, floor)}",
                flush=True,
            )
        spark.stop()


if __name__ == "__main__":
    main()
