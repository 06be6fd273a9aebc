"""Online sync from Gold into Redis: throughput, a raw HSET baseline, incremental vs full.

    .venv/bin/python benchmarks/bench_sync.py                    # 1M rows x 20 features
    .venv/bin/python benchmarks/bench_sync.py --rows 200000 --small-rows 10000

Starts its own redis-server on a free loopback port (stopped at the end), writes a 20-feature
group of --rows entities (one row each) to a Gold table in a temporary store, and measures:
  1. a full sync into the empty Redis: rows/s of the whole call (Spark and registry included)
     and the Redis server's CPU seconds (rows per server CPU second is what the server alone
     allows). Then the same sync again over the filled store (a replay: every key compared),
     and one full sync into the empty Redis per engine (delta-rs on the driver, Spark writing
     from the driver, Spark writing from the executors) where the sync takes `engine=`;
  2. a full sync of a --small-rows group into an empty Redis against a raw pipelined HSET of
     the same rows from the driver (redis-py pipeline, values encoded by the codec, rows
     already in memory: the cheapest hand-written loader). Best of --repeat each; the target
     is sync <= 3x raw;
  3. newer events for 1% of the entities appended to the big table (a plain Delta append), then
     an incremental sync (the change feed): full sync seconds (part 1) / incremental seconds;
     target >= 20x.
     The values read back from Redis are checked against the rows written.
Each sync's SyncResult gives the Spark part (`spark_seconds`) and the push part.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bench_online import FEATURES, gold_rows, server_cpu, start_redis

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.online import store_namespace, sync_to_online
from featurelake.online.codec import encode
from featurelake.online.values import from_micros
from featurelake.schema import FeatureGroupSchema
from featurelake.serving import FeatureStore

BIG = "sync_big"
SMALL = "sync_small"


def schema(name: str) -> FeatureGroupSchema:
    return FeatureGroupSchema(name, ["entity_id"], FEATURES)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--change", type=float, default=0.01, help="share of rows changed")
    parser.add_argument("--repeat", type=int, default=3, help="runs of part 2, best kept")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    process, url = start_redis(workdir)
    try:
        run(args, workdir, url)
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, url: str) -> None:
    config = FeatureStoreConfig(
        storage_path=str(workdir / "store"),
        spark_master="local[2]",
        spark_shuffle_partitions=4,
        enable_online_store=True,
        online_backend=OnlineBackend.REDIS,
        online_url=url,
        online_timeout_ms=10_000,
        metadata_cache_ttl_seconds=3_600,
    )
    store = FeatureStore(config)
    spark = store.offline.spark
    raw = redis.Redis.from_url(url)
    for name in (BIG, SMALL):
        store.register_features(schema(name))
    print(f"writing {args.rows:,} and {args.small_rows:,} entities x {len(FEATURES)} features ...")
    store.write_features(BIG, gold_rows(spark, args.rows))
    store.write_features(SMALL, gold_rows(spark, args.small_rows))
    prefix = f"{store_namespace(config)}:"

    def sync(group: str, *, full: bool) -> tuple[Any, float]:
        before = server_cpu(raw)
        result = store.sync_to_online(group, full=full)
        return result, server_cpu(raw) - before

    print(f"\n1. full sync, {args.rows:,} rows x {len(FEATURES)} features ({load()})")
    print(
        f"{'case (engine)':<32}{'rows':>10}{'whole s':>9}{'rows/s':>10}{'spark s':>9}{'push s':>8}"
        f"{'redis cpu s':>12}{'rows/redis-cpu-s':>18}"
    )

    def report(label: str, result: Any, redis_cpu: float) -> None:
        rows = result.rows_written + result.rows_rejected
        bound = rows / redis_cpu if redis_cpu > 0 else 0.0
        label = f"{label} ({getattr(result, 'engine', '') or 'spark'})"
        print(
            f"{label:<32}{rows:>10,}{result.duration_seconds:>9.2f}"
            f"{result.rows_per_second:>10,.0f}{result.spark_seconds:>9.2f}"
            f"{result.push_seconds:>8.2f}{redis_cpu:>12.2f}{bound:>18,.0f}"
        )

    raw.flushdb()
    full, full_cpu = sync(BIG, full=True)
    report("into empty Redis", full, full_cpu)
    replay, replay_cpu = sync(BIG, full=True)
    report("again (replay)", replay, replay_cpu)
    if "engine" in inspect.signature(sync_to_online).parameters:
        for engine in ("delta-rs", "spark", "executors"):
            raw.flushdb()
            before = server_cpu(raw)
            forced = sync_to_online(store.online, store.registry, BIG, full=True, engine=engine)
            report("into empty Redis, forced", forced, server_cpu(raw) - before)

    print(
        f"\n2. {args.small_rows:,}-row sync vs raw pipelined HSET, best of {args.repeat} ({load()})"
    )
    rows = small_rows(store, args.small_rows)
    syncs, raws = [], []
    for _ in range(args.repeat):
        raw.flushdb()
        result, _ = sync(SMALL, full=True)
        syncs.append(result.duration_seconds)
        raw.flushdb()
        raws.append(raw_hset(raw, f"{prefix}{SMALL}@1:", rows))
    assert raw.dbsize() == args.small_rows
    best_sync, best_raw = min(syncs), min(raws)
    print(f"{'full sync':<28}{best_sync:>8.3f} s{args.small_rows / best_sync:>12,.0f} rows/s")
    print(
        f"{'raw pipelined HSET':<28}{best_raw:>8.3f} s{args.small_rows / best_raw:>12,.0f} rows/s"
    )
    print(f"{'sync / raw':<28}{best_sync / best_raw:>8.2f}x   (target <= 3x)")

    print(f"\n3. incremental sync after a {args.change:.0%} change ({load()})")
    raw.flushdb()
    store.sync_to_online(BIG, full=True)
    changed = change(store, args)
    incremental, incremental_cpu = sync(BIG, full=False)
    assert incremental.mode == "incremental", incremental.mode
    assert incremental.rows_written == len(changed), incremental
    check(store, changed)
    print(
        f"{'case (engine)':<32}{'rows':>10}{'whole s':>9}{'rows/s':>10}{'spark s':>9}{'push s':>8}"
        f"{'redis cpu s':>12}{'rows/redis-cpu-s':>18}"
    )
    report("full (part 1)", full, full_cpu)
    report("incremental", incremental, incremental_cpu)
    ratio = full.duration_seconds / incremental.duration_seconds
    print(f"full / incremental: {ratio:.1f}x   (target >= 20x)")
    raw.close()
    store.close()


def small_rows(store: FeatureStore, count: int) -> list[dict[str, Any]]:
    """The small group's rows as the driver would hold them before a hand-written load."""
    table = store.offline.read_table(SMALL).toArrow()
    assert table.num_rows == count
    return table.to_pylist()


def raw_hset(client: redis.Redis, prefix: str, rows: list[dict[str, Any]]) -> float:
    """Seconds to HSET every row (event time, ingestion time, encoded features) pipelined."""
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for number, row in enumerate(rows, 1):
        mapping: dict[str, Any] = {
            "@ts": _micros(row["event_timestamp"]),
            "@ing": _micros(row["_ingested_at"]),
        }
        for feature in FEATURES:
            mapping[feature["name"]] = encode(row[feature["name"]])
        pipe.hset(f"{prefix}{row['entity_id']}", mapping=mapping)
        if number % 1_000 == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


def _micros(value: Any) -> int:
    from featurelake.online.values import to_micros

    return to_micros(value)


def change(store: FeatureStore, args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """Append newer events, new values, for `args.change` of the entities; returns them."""
    from pyspark.sql import functions as F

    rng = random.Random(args.seed)
    count = max(1, int(args.rows * args.change))
    entities = sorted(rng.sample(range(args.rows), count))
    spark = store.offline.spark
    ids = F.col("entity_id")
    columns = [ids, F.lit("2024-06-02").cast("timestamp").alias("event_timestamp")]
    for i in range(12):
        columns.append((ids * 0.25 + F.lit(1_000_000.0 + i)).alias(f"amount_{i}"))
    for i in range(5):
        columns.append(((ids + i) % 100).cast("bigint").alias(f"count_{i}"))
    columns.append(F.concat(F.lit("new-"), (ids % 7).cast("string")).alias("segment"))
    columns.append(F.concat(F.lit("moved-"), (ids % 97).cast("string")).alias("city"))
    columns.append((ids % 3 == 0).alias("active"))
    frame = spark.createDataFrame([(e,) for e in entities], "entity_id bigint").select(*columns)
    # A plain Delta append of the changed rows: the sync reads the same change feed as after a
    # write_features, whose validation and statistics are not what is measured here.
    path = store.registry.gold_location(BIG, 1).path
    frame.withColumn("_ingested_at", F.current_timestamp()).write.format("delta").mode(
        "append"
    ).save(path)
    return {r["entity_id"]: r for r in frame.toArrow().to_pylist()}


def check(store: FeatureStore, changed: dict[int, dict[str, Any]]) -> None:
    """The changed entities read back from Redis hold the appended rows."""
    sample = sorted(changed)[:: max(1, len(changed) // 200)]
    vectors = store.get_online_features([f"{BIG}.*"], sample)
    for entity, vector in zip(sample, vectors, strict=True):
        expected = changed[entity]
        for feature in FEATURES:
            assert vector.get(feature["name"]) == expected[feature["name"]], (entity, feature)
        assert vector.event_time("amount_0") == from_micros(_micros(expected["event_timestamp"]))


if __name__ == "__main__":
    main()
