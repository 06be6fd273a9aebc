"""Online serving: read latency of get_online_features and sync throughput, in one process.

    .venv/bin/python benchmarks/bench_online.py                      # 100k entities x 20 features
    .venv/bin/python benchmarks/bench_online.py --entities 300000 --reads 5000

Starts its own redis-server on a free loopback port (stopped at the end), writes a 20-feature
group to a Gold table in a temporary store, and measures:
  1. sync throughput: a full sync of the Gold table into the in-memory and the Redis store
     (whole sync, and the push part alone: Arrow rows -> store);
  2. latency (p50/p95/p99) of FeatureStore.get_online_features for 1 entity x 20 features and
     100 entities x 20 features, in-memory and Redis;
  3. the reference: raw pipelined HGETALL of the same keys through redis-py, same entities,
     same run. Redis figures are reported as a ratio to it;
  4. the cost of value history: latest-value reads (1x20, 100x20) of stores keeping the last
     10 versions of every value against stores keeping none, after the same 5 writes of every
     entity, reads of the two interleaved batch by batch (`--history-only` runs just this).
Targets: in-memory p99 < 0.2 ms (1x20); Redis p50 within 2x of the raw reads; sync into local
Redis >= 100k entity rows/s; history slows the latest-value read by <= 10%. Loops are bounded
by --reads.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.online import InMemoryOnlineStore, RedisOnlineStore, store_namespace
from featurelake.schema import FeatureGroupSchema
from featurelake.serving import FeatureStore

GROUP = "bench_features"
FEATURES = (
    [{"name": f"amount_{i}", "type": "double"} for i in range(12)]
    + [{"name": f"count_{i}", "type": "bigint"} for i in range(5)]
    + [{"name": "segment", "type": "string"}, {"name": "city", "type": "string"}]
    + [{"name": "active", "type": "boolean"}]
)
SCHEMA = FeatureGroupSchema(GROUP, ["entity_id"], FEATURES)
REFS = [f"{GROUP}.{f['name']}" for f in FEATURES]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(200):
        try:
            if client.ping():
                client.close()
                return process, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def gold_rows(spark: Any, entities: int) -> Any:
    from pyspark.sql import functions as F

    rows = spark.range(0, entities, numPartitions=4)
    columns = [
        F.col("id").alias("entity_id"),
        F.lit("2024-06-01").cast("timestamp").alias("event_timestamp"),
    ]
    for i in range(12):
        columns.append(F.round(F.rand(i) * 1000, 4).alias(f"amount_{i}"))
    for i in range(5):
        columns.append((F.rand(100 + i) * 100).cast("bigint").alias(f"count_{i}"))
    columns.append(F.concat(F.lit("seg-"), (F.col("id") % 7).cast("string")).alias("segment"))
    columns.append(F.concat(F.lit("city-"), (F.col("id") % 97).cast("string")).alias("city"))
    columns.append((F.col("id") % 2 == 0).alias("active"))
    return rows.select(*columns)


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return at(0.50), at(0.95), at(0.99)


def timed(call: Callable[[list[int]], Any], batches: list[list[int]], warmup: int) -> list[int]:
    for batch in batches[:warmup]:
        call(batch)
    samples = []
    gc.disable()
    try:
        for batch in batches:
            started = time.perf_counter_ns()
            call(batch)
            samples.append(time.perf_counter_ns() - started)
    finally:
        gc.enable()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=3_000, help="timed reads per case")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history-entities", type=int, default=10_000)
    parser.add_argument("--history-only", action="store_true", help="run only part 4")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_online_"))
    process, url = start_redis(workdir)
    try:
        if not args.history_only:
            run(args, workdir, url)
        history_cost(args, url)
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
        online_timeout_ms=2_000,
        metadata_cache_ttl_seconds=3_600,
    )
    redis_serving = FeatureStore(config)
    redis_serving.register_features(SCHEMA)
    print(f"writing {args.entities:,} entities x {len(FEATURES)} features to the Gold table ...")
    redis_serving.write_features(GROUP, gold_rows(redis_serving.offline.spark, args.entities))
    memory_serving = FeatureStore(
        config,
        redis_serving.offline.spark,
        registry=redis_serving.registry,
        online=InMemoryOnlineStore(resolver=redis_serving.registry.get_group),
    )

    raw = redis.Redis.from_url(url)
    print("\nsync (full, Gold -> online); CPU seconds are load-independent")
    print(
        f"{'store':<8}{'rows':>9}{'whole s':>9}{'rows/s':>9}{'push s':>8}{'push rows/s':>12}"
        f"{'py cpu s':>10}{'redis cpu s':>12}{'rows/cpu-s':>11}"
    )
    for name, serving in (("memory", memory_serving), ("redis", redis_serving)):
        cpu_before, server_before = time.process_time(), server_cpu(raw)
        result = serving.sync_to_online(GROUP, full=True)
        python_cpu = time.process_time() - cpu_before
        redis_cpu = server_cpu(raw) - server_before
        rows = result.rows_written + result.rows_rejected
        # Python and the server work in parallel: the busier one bounds the rate.
        bound = rows / max(python_cpu, redis_cpu) if max(python_cpu, redis_cpu) > 0 else 0.0
        print(
            f"{name:<8}{rows:>9,}{result.duration_seconds:>9.2f}{result.rows_per_second:>9,.0f}"
            f"{result.push_seconds:>8.2f}{result.push_rows_per_second:>12,.0f}"
            f"{python_cpu:>10.2f}{redis_cpu:>12.2f}{bound:>11,.0f}"
        )
    print(
        "  (py cpu includes the driver's share of Spark: Arrow decoding, py4j; rows/cpu-s = "
        "rows / max(py cpu, redis cpu))"
    )

    rng = random.Random(args.seed)
    namespace = store_namespace(config)
    assert isinstance(redis_serving.online, RedisOnlineStore)
    print(f"\nread latency, {args.reads:,} timed reads per case (ms)")
    print(f"{'case':<26}{'p50':>9}{'p95':>9}{'p99':>9}{'p50 / raw':>11}")
    for entities in (1, 100):
        batches = [
            [rng.randrange(args.entities) for _ in range(entities)] for _ in range(args.reads)
        ]
        warmup = max(50, args.reads // 20)

        def raw_read(batch: list[int]) -> Any:
            pipe = raw.pipeline(transaction=False)
            for entity in batch:
                pipe.hgetall(f"{namespace}:{GROUP}@1:{entity}")
            return pipe.execute()

        raw_p = percentiles(timed(raw_read, batches, warmup))
        cases = {
            "memory": memory_serving.get_online_features,
            "redis": redis_serving.get_online_features,
        }
        check = redis_serving.get_online_features(REFS, batches[0])
        assert isinstance(check, list) and all(v.found(FEATURES[0]["name"]) for v in check)
        for name, read in cases.items():
            p = percentiles(timed(lambda batch, read=read: read(REFS, batch), batches, warmup))
            ratio = f"{p[0] / raw_p[0]:.2f}x" if name == "redis" else ""
            label = f"{name} {entities}x{len(REFS)}"
            print(f"{label:<26}{p[0]:>9.3f}{p[1]:>9.3f}{p[2]:>9.3f}{ratio:>11}")
        label = f"raw HGETALL {entities}x{len(REFS)}"
        print(f"{label:<26}{raw_p[0]:>9.3f}{raw_p[1]:>9.3f}{raw_p[2]:>9.3f}{'1.00x':>11}")
    raw.close()
    redis_serving.close()


HISTORY_KEPT = 10
HISTORY_WRITES = 5


def history_cost(args: argparse.Namespace, url: str) -> None:
    """Latest-value reads with and without value history, same data, same run."""
    entities = args.history_entities
    rng = random.Random(args.seed)
    stores: dict[str, dict[int, Any]] = {"memory": {}, "redis": {}}
    print(
        f"\nvalue history: {entities:,} entities x {len(FEATURES)} features, each written "
        f"{HISTORY_WRITES} times; keeping 0 vs {HISTORY_KEPT} versions"
    )
    print(f"{'store':<8}{'kept':>5}{'write s':>9}{'rows/s':>10}")
    for kept in (0, HISTORY_KEPT):
        stores["memory"][kept] = InMemoryOnlineStore(history_size=kept)
        stores["redis"][kept] = RedisOnlineStore(
            url, namespace=f"bench_history_{kept}", timeout_ms=5_000, history_size=kept
        )
        for name in ("memory", "redis"):
            store = stores[name][kept]
            store.register_schema(SCHEMA)
            started = time.perf_counter()
            for version in range(HISTORY_WRITES):
                at = f"2024-06-01T00:00:0{version}"
                for start in range(0, entities, 2_000):
                    rows = [
                        {
                            "entity_id": e,
                            "event_timestamp": at,
                            **{
                                f["name"]: history_value(f["type"], e + version + i)
                                for i, f in enumerate(FEATURES)
                            },
                        }
                        for e in range(start, min(entities, start + 2_000))
                    ]
                    store.write_batch(SCHEMA, rows)
            seconds = time.perf_counter() - started
            total = entities * HISTORY_WRITES
            print(f"{name:<8}{kept:>5}{seconds:>9.2f}{total / seconds:>10,.0f}")
    print(f"\nlatest-value read, {args.reads:,} reads per case, interleaved (ms)")
    print(f"{'case':<18}{'p50 off':>9}{'p50 on':>9}{'p99 off':>9}{'p99 on':>9}{'p50 on/off':>12}")
    for size in (1, 100):
        batches = [[rng.randrange(entities) for _ in range(size)] for _ in range(args.reads)]
        for name in ("memory", "redis"):
            off, on = stores[name][0], stores[name][HISTORY_KEPT]
            assert off.get(REFS, batches[0])[0].to_list() == on.get(REFS, batches[0])[0].to_list()
            for batch in batches[: max(50, args.reads // 20)]:
                off.get(REFS, batch)
                on.get(REFS, batch)
            times: dict[int, list[int]] = {0: [], HISTORY_KEPT: []}
            gc.disable()
            try:
                for number, batch in enumerate(batches):
                    order = (off, on) if number % 2 == 0 else (on, off)
                    for store in order:
                        started = time.perf_counter_ns()
                        store.get(REFS, batch)
                        times[store.history_size].append(time.perf_counter_ns() - started)
            finally:
                gc.enable()
            p_off, p_on = percentiles(times[0]), percentiles(times[HISTORY_KEPT])
            label = f"{name} {size}x{len(REFS)}"
            print(
                f"{label:<18}{p_off[0]:>9.3f}{p_on[0]:>9.3f}{p_off[2]:>9.3f}{p_on[2]:>9.3f}"
                f"{p_on[0] / p_off[0]:>11.2f}x"
            )
    history = stores["redis"][HISTORY_KEPT].get_value_history(REFS[0], 0)
    assert [v.version for v in history] == list(range(HISTORY_WRITES, 0, -1))
    for kept_stores in stores.values():
        for store in kept_stores.values():
            store.delete(SCHEMA)
            store.close()


def history_value(kind: str, seed: int) -> Any:
    """The same value for the same seed, in every store."""
    if kind == "double":
        return seed * 0.25
    if kind == "bigint":
        return seed % 100
    if kind == "boolean":
        return seed % 2 == 0
    return f"v-{seed % 97}"


if __name__ == "__main__":
    main()
