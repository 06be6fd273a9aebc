"""Streaming into Gold + Redis: sustained rows/s and event-to-online-visible latency.

    .venv/bin/python benchmarks/bench_streaming.py                       # 1M rows, 10 batches
    .venv/bin/python benchmarks/bench_streaming.py --rows 200000 --batches 4 --events 20

Starts its own redis-server on a free loopback port. Two measurements in one process:
  1. throughput: a Silver Delta table of --rows rows in --batches commits (one file each) is
     streamed with trigger available_now, one commit per micro-batch, by `start_stream` (query,
     validation, MERGE into Gold, latest values pushed to Redis). The baseline is a plain
     Structured Streaming copy of the same commits (foreachBatch appending to a Delta table:
     no validation, no merge, no online push). After an untimed warm-up stream (JIT, first log
     reads), each runs --repeat times, alternated; the ratio of the medians is printed.
     --driver-max-rows 0 gives the Spark path (every batch checked inside a Spark MERGE).
  2. latency: with trigger --trigger, once the stream has written its first batch, a writer
     appends one commit of --rate rows every second (delta-rs, no Spark job) for --events
     seconds; a poller reads Redis every 10 ms and notes when each commit's entities are
     served. p50 / p99 of commit -> online-visible.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_online import start_redis

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.online import create_online_store
from featurelake.scheduling.streaming import DRIVER_MAX_ROWS, start_stream
from featurelake.schema import FeatureGroupSchema
from featurelake.session import get_spark
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

QUERY = (
    "SELECT id AS customer_id, ts AS event_timestamp, amount * 1.2 AS spend, country FROM {source}"
)


def group(name: str, silver: str) -> FeatureGroupSchema:
    return FeatureGroupSchema.from_dict(
        {
            "name": name,
            "entity_keys": ["customer_id"],
            "features": [
                {"name": "spend", "type": "double"},
                {"name": "country", "type": "string"},
            ],
            "source": {"table": silver, "query": QUERY},
        }
    )


def write_commits(spark: Any, path: str, rows: int, batches: int) -> None:
    from pyspark.sql import functions as F

    per = rows // batches
    for batch in range(batches):
        spark.range(batch * per, (batch + 1) * per, numPartitions=1).select(
            F.col("id"),
            F.lit(datetime(2024, 1, 1)).alias("ts"),
            (F.col("id") % 997).cast("double").alias("amount"),
            F.lit("FR").alias("country"),
        ).write.format("delta").mode("append").save(path)


def throughput(spark: Any, store: MaterializedFeatureStore, root: Path, args: Any) -> None:
    silver = str(root / "silver")
    write_commits(spark, silver, args.rows, args.batches)
    rows = args.rows // args.batches * args.batches
    one = {"maxFilesPerTrigger": "1"}

    def plain_stream(target: str, options: dict[str, str]) -> float:
        def copy(batch: Any, _: int) -> None:
            batch.write.format("delta").mode("append").save(target)

        started = time.perf_counter()
        query = (
            spark.readStream.format("delta")
            .options(**options)
            .load(silver)
            .writeStream.foreachBatch(copy)
            .option("checkpointLocation", f"{target}_ckpt")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        return time.perf_counter() - started

    def featurelake_stream(name: str) -> tuple[float, list[Any]]:
        store.register_features(group(name, silver))
        started = time.perf_counter()
        stream = start_stream(
            store,
            name,
            trigger="available_now",
            options=one,
            driver_max_rows=args.driver_max_rows,
        )
        stream.await_termination()
        return time.perf_counter() - started, stream.batches

    # warm-up (JIT, Delta's first log reads): one micro-batch of the whole table, not timed
    plain_stream(str(root / "warm_up"), {})
    plain_runs, featurelake_runs, batches = [], [], []
    for run in range(args.repeat):  # alternated, so that both see the same load
        plain_runs.append(plain_stream(str(root / f"plain_{run}"), one))
        seconds, done = featurelake_stream(f"stream_throughput_{run}")
        featurelake_runs.append(seconds)
        batches += done
    plain_s, featurelake_s = statistics.median(plain_runs), statistics.median(featurelake_runs)
    durations = [b.duration_seconds for b in batches]
    print(
        f"throughput, {rows:,} rows in {args.batches} micro-batches, median of {args.repeat} "
        f"alternated runs:\n"
        f"  plain Delta -> Delta stream:               {rows / plain_s:>10,.0f} rows/s "
        f"({plain_s:.1f} s; runs {', '.join(f'{t:.1f}' for t in plain_runs)})\n"
        f"  start_stream -> Gold (merge) + Redis:      {rows / featurelake_s:>10,.0f} rows/s "
        f"({featurelake_s:.1f} s; runs {', '.join(f'{t:.1f}' for t in featurelake_runs)}; "
        f"batch p50 {statistics.median(durations):.2f} s, {batches[-1].engine})\n"
        f"  ratio plain / featurelake: {featurelake_s / plain_s:.2f}x "
        f"(start_stream's throughput {plain_s / featurelake_s:.2f}x the plain stream's)"
    )


def latency(spark: Any, store: MaterializedFeatureStore, root: Path, args: Any) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    silver = str(root / "silver_latency")
    write_commits(spark, silver, 10, 1)
    schema = group("stream_latency", silver)
    store.register_features(schema)
    online = create_online_store(store.config, store.registry)  # what the stream writes to
    stream = start_stream(
        store, schema.name, trigger=args.trigger, driver_max_rows=args.driver_max_rows
    )
    while not stream.batches:  # steady state: the stream has started and written its first batch
        if not stream.is_active:
            stream.await_termination(timeout=1)
        time.sleep(0.05)
    arrow_schema = pa.schema(
        [
            ("id", pa.int64()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("amount", pa.float64()),
            ("country", pa.string()),
        ]
    )
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or len(seen) < len(committed):
            for first_id in [i for i in committed if i not in seen]:
                vector = online.get(f"{schema.name}.spend", [first_id])[0]
                if vector.get("spend") is not None:
                    seen[first_id] = time.perf_counter()
            if done.is_set() and time.perf_counter() - last_commit[0] > 120:
                return
            time.sleep(0.01)

    last_commit = [time.perf_counter()]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    next_id = 1_000_000
    for _ in range(args.events):
        tick = time.perf_counter()
        now = datetime.now(UTC)
        ids = list(range(next_id, next_id + args.rate))
        table = pa.table(
            {
                "id": ids,
                "ts": [now] * len(ids),
                "amount": [1.0] * len(ids),
                "country": ["DE"] * len(ids),
            },
            schema=arrow_schema,
        )
        write_deltalake(silver, table, mode="append")
        committed[next_id] = last_commit[0] = time.perf_counter()
        next_id += args.rate
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    done.set()
    poller.join(timeout=180)
    stream.stop()
    batches = [b for b in stream.batches if b.rows_written]
    if batches:
        online = [b.online_seconds for b in batches if b.online_seconds is not None]
        print(
            f"  {len(batches)} micro-batches ({batches[-1].engine}): p50 "
            f"{statistics.median(b.duration_seconds for b in batches):.2f} s each, online after "
            f"p50 {statistics.median(online) if online else float('nan'):.2f} s"
        )
    delays = sorted(seen[i] - committed[i] for i in seen)
    if not delays:
        print("latency: nothing became visible online")
        return
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(
        f"latency, {args.rate:,} rows/s in 1 commit/s for {args.events} s, trigger "
        f"'{args.trigger}': commit -> served by Redis p50 {statistics.median(delays):.2f} s, "
        f"p99 {p99:.2f} s ({len(delays)}/{len(committed)} commits seen)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000, help="rows per second (latency)")
    parser.add_argument("--events", type=int, default=30, help="seconds of input (latency)")
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs of each stream")
    parser.add_argument(
        "--gold-deletion-vectors",
        action="store_true",
        help="Gold tables with deletion vectors (the driver path then merges them with Spark)",
    )
    parser.add_argument(
        "--driver-max-rows",
        type=int,
        default=DRIVER_MAX_ROWS,
        help="start_stream's driver_max_rows (0: every batch checked and merged by Spark)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="featurelake-bench-streaming-"))
    redis_process, url = start_redis(root)
    try:
        config = FeatureStoreConfig(
            storage_path=str(root / "store"),
            spark_master="local[*]",
            spark_shuffle_partitions=4,
            enable_online_store=True,
            online_backend=OnlineBackend.REDIS,
            online_url=url,
            online_timeout_ms=5000,
            gold_deletion_vectors=args.gold_deletion_vectors,
            spark_conf={"spark.driver.memory": "4g", "spark.ui.enabled": "false"},
        )
        spark = get_spark(config)
        store = MaterializedFeatureStore(StoreContext.of(config, spark))
        throughput(spark, store, root, args)
        latency(spark, store, root, args)
        spark.stop()
    finally:
        redis_process.kill()


if __name__ == "__main__":
    main()
