"""Point-in-time join: the sort-based as-of join against a naive join-and-rank, in one process.

    .venv/bin/python benchmarks/bench_pit.py                      # ~200k entity x 2M feature rows
    .venv/bin/python benchmarks/bench_pit.py --entities 1000000 --events 10000000
    .venv/bin/python benchmarks/bench_pit.py --cluster local      # local[2] vs a standalone cluster
    .venv/bin/python benchmarks/bench_pit.py --cluster spark://host:7077 --storage /shared/bench

Measures, on the same Delta input, writing every result to the `noop` sink:
  1. point_in_time_join vs a naive join-and-rank with the same semantics (uniform keys),
  2. the same with skewed keys (one key holds 20% of the feature and entity rows),
  3. point_in_time_join vs one shuffle-sort of the same rows (the floor for any sort-based join).
A naive run still going after `--naive-timeout-factor` x the point-in-time time is cancelled,
and its time is reported as a lower bound ("> ..."). `--repeat N` keeps the best of N runs.

With `--cluster MASTER` it instead runs the point-in-time join and the shuffle-sort floor on
`--master` (local[2]) and then on MASTER over the same Delta tables (uniform keys), and reports
the wall times and the shuffle bytes each read (Spark's REST status API): the join reads about
what one shuffle of the entity and event rows reads. `--cluster local` starts a standalone
cluster of two single-core workers on loopback for the run (its executors are JVMs of their
own, as on a real cluster) and stops it at the end; the data must be on a path every executor
sees (`--storage`, default a local temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from featurelake.config import FeatureStoreConfig
from featurelake.connect_server import LOOPBACK
from featurelake.engines.spark.pit import PitSource, point_in_time_join
from featurelake.session import get_spark
from featurelake.standalone_cluster import LocalStandaloneCluster

KEY = "customer_id"
TS = "event_ts"
FEATURES = ("spend", "visits", "tier")
SPAN_SECONDS = 365 * 24 * 3600
BASE_EPOCH = 1_704_067_200  # 2024-01-01 UTC


@dataclass(frozen=True)
class Timing:
    seconds: float
    finished: bool
    cpu_seconds: float | None = None  # CPU time of the local Spark JVM during the run
    shuffle_read_bytes: int | None = None  # over the run's jobs (Spark's REST status API)

    def __str__(self) -> str:
        return f"{self.seconds:8.1f}" if self.finished else f"> {self.seconds:6.1f}"

    def cpu(self) -> str:
        if self.cpu_seconds is None:
            return "n/a"
        return f"{self.cpu_seconds:.1f}" if self.finished else f"> {self.cpu_seconds:.1f}"


class JvmCpu:
    """CPU seconds used by the local Spark JVM (Linux /proc), robust to other load on the box."""

    def __init__(self, spark: SparkSession) -> None:
        self.path: Path | None = None
        if not spark.sparkContext.master.startswith("local"):
            return  # the executors are other processes
        try:
            pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
            path = Path(f"/proc/{pid}/stat")
            self.path = path if path.is_file() else None
        except Exception:
            self.path = None

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        fields = self.path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def key_column(keys: int, skew: bool, seed: int) -> Column:
    """Uniform keys in [0, keys); with skew, key 0 takes 20% of the rows."""
    uniform = (F.rand(seed) * keys).cast("long")
    if not skew:
        return uniform
    return F.when(F.rand(seed + 1) < 0.2, F.lit(0)).otherwise(
        1 + (F.rand(seed + 2) * (keys - 1)).cast("long")
    )


def time_column(seed: int) -> Column:
    return F.timestamp_seconds(F.lit(BASE_EPOCH) + (F.rand(seed) * SPAN_SECONDS).cast("long"))


def generate(spark: SparkSession, root: str, args: argparse.Namespace, skew: bool) -> None:
    """Write entity and feature rows as Delta tables under `root`."""
    seed = 7 if skew else 3
    events = spark.range(args.events, numPartitions=args.partitions).select(
        key_column(args.keys, skew, seed).alias(KEY),
        time_column(seed + 10).alias(TS),
        F.when(F.rand(seed + 20) > 0.05, F.round(F.rand(seed + 21) * 1000, 2)).alias("spend"),
        F.when(F.rand(seed + 22) > 0.05, (F.rand(seed + 23) * 100).cast("int")).alias("visits"),
        F.element_at(
            F.array(F.lit("gold"), F.lit("silver"), F.lit("bronze")),
            (F.rand(seed + 24) * 3).cast("int") + 1,
        ).alias("tier"),
    )
    ingest_delay_us = (F.rand(seed + 25) * 3600 * 1e6).cast("long")
    events = events.withColumn(
        "_ingested_at", F.timestamp_micros(F.unix_micros(F.col(TS)) + ingest_delay_us)
    )
    entities = spark.range(args.entities, numPartitions=args.partitions).select(
        F.col("id").alias("request_id"),
        key_column(args.keys, skew, seed + 100).alias(KEY),
        time_column(seed + 110).alias("ts"),
        (F.rand(seed + 120) > 0.5).cast("int").alias("label"),
    )
    events.write.format("delta").mode("overwrite").save(f"{root}/features")
    entities.write.format("delta").mode("overwrite").save(f"{root}/entities")


def naive(entity_df: DataFrame, features: DataFrame, ttl: timedelta | None) -> DataFrame:
    """Join every entity row to all earlier events of its key, keep the latest per row."""
    entity = entity_df.withColumn("_rid", F.monotonically_increasing_id())
    right = features.select(
        F.col(KEY).alias("_key"),
        F.col(TS).alias("_ev"),
        F.col("_ingested_at").alias("_ing"),
        *[F.col(f) for f in FEATURES],
    )
    condition = (entity[KEY] == right["_key"]) & (right["_ev"] <= entity["ts"])
    if ttl is not None:
        condition = condition & (entity["ts"] <= right["_ev"] + F.lit(ttl))
    joined = entity.join(right, condition, "left")
    rank = Window.partitionBy("_rid").orderBy(F.col("_ev").desc(), F.col("_ing").desc())
    return (
        joined.withColumn("_rn", F.row_number().over(rank))
        .where(F.col("_rn") == 1)
        .select(*entity_df.columns, *FEATURES)
    )


def shuffle_sort(entity_df: DataFrame, features: DataFrame) -> DataFrame:
    """The same rows a point-in-time pass moves, shuffled by key and sorted by time only."""
    pruned = features.select(KEY, F.col(TS).alias("ts"), "_ingested_at", *FEATURES)
    rows = entity_df.unionByName(pruned, allowMissingColumns=True)
    return rows.repartition(KEY).sortWithinPartitions(KEY, "ts")


def tempo_asof(entity_df: DataFrame, features: DataFrame, ttl: timedelta | None) -> DataFrame:
    """dbl-tempo's `asofJoin` of the same rows (ties by `_ingested_at` as its sequence column,
    whole rows rather than the last non-null value per column), when it is installed."""
    from tempo import TSDF

    left = TSDF(entity_df, ts_col="ts", partition_cols=[KEY])
    right = TSDF(  # tempo wants one time column name on both sides
        features.select(KEY, F.col(TS).alias("ts"), "_ingested_at", *FEATURES),
        ts_col="ts",
        partition_cols=[KEY],
        sequence_col="_ingested_at",
    )
    tolerance = int(ttl.total_seconds()) if ttl is not None else None
    joined = left.asofJoin(
        right, right_prefix="r", skipNulls=False, suppress_null_warning=True, tolerance=tolerance
    )
    return joined.df


def has_tempo() -> bool:
    """Whether dbl-tempo is installed (`pip install dbl-tempo ipython scipy`)."""
    try:
        import tempo  # noqa: F401
    except ImportError:
        return False
    return True


def shuffle_read_bytes(spark: SparkSession, group: str) -> int | None:
    """Shuffle bytes read by the stages of the job group's jobs, from the REST status API."""
    ui = spark.sparkContext.uiWebUrl
    if ui is None:
        return None
    base = f"{ui}/api/v1/applications/{spark.sparkContext.applicationId}"

    def get(path: str) -> Any:
        with urlopen(f"{base}/{path}", timeout=30) as response:
            return json.load(response)

    stage_ids = {
        stage_id
        for job in get("jobs")
        if job.get("jobGroup") == group
        for stage_id in job["stageIds"]
    }
    total = 0
    for stage_id in stage_ids:
        for attempt in get(f"stages/{stage_id}"):
            if attempt.get("status") != "SKIPPED":
                total += int(attempt.get("shuffleReadBytes", 0))
    return total


def run(
    spark: SparkSession,
    build: Callable[[], DataFrame],
    timeout: float | None,
    cpu: JvmCpu | None = None,
) -> Timing:
    """Time building and writing a result to the noop sink; cancel it after `timeout` seconds."""
    context = spark.sparkContext  # job groups: this benchmark owns a classic local session
    group = f"bench-{uuid.uuid4().hex}"
    failure: list[BaseException] = []

    def work() -> None:
        context.setJobGroup(group, "bench_pit", interruptOnCancel=True)
        try:
            build().write.format("noop").mode("overwrite").save()
        except BaseException as error:
            failure.append(error)

    cpu_start = cpu.seconds() if cpu else None
    start = time.perf_counter()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    finished = not worker.is_alive()
    elapsed = time.perf_counter() - start
    cpu_end = cpu.seconds() if cpu else None
    if not finished:
        context.cancelJobGroup(group)
        worker.join()
    elif failure:
        raise failure[0]
    used = None if cpu_start is None or cpu_end is None else cpu_end - cpu_start
    read = shuffle_read_bytes(spark, group) if finished else None
    return Timing(elapsed, finished=finished, cpu_seconds=used, shuffle_read_bytes=read)


def best(
    spark: SparkSession,
    build: Callable[[], DataFrame],
    repeat: int,
    cpu: JvmCpu,
    timeout: float | None = None,
) -> Timing:
    """The fastest of `repeat` runs (a stopped run ends the series: it is a lower bound)."""
    timings: list[Timing] = []
    for _ in range(repeat):
        timing = run(spark, build, timeout, cpu)
        timings.append(timing)
        if not timing.finished:
            return timing
    return min(timings, key=lambda t: t.seconds)


def measure(
    spark: SparkSession,
    folder: str,
    args: argparse.Namespace,
    ttl: timedelta | None,
    cpu: JvmCpu,
    *,
    warm_up: bool,
) -> dict[str, Timing]:
    """Shuffle-sort, point-in-time and naive runs over the Delta tables in `folder`."""
    entity_df = spark.read.format("delta").load(f"{folder}/entities")
    features = spark.read.format("delta").load(f"{folder}/features")

    def variants(entity: DataFrame, events: DataFrame) -> dict[str, Callable[[], DataFrame]]:
        source = PitSource(
            group="customer",
            df=events,
            entity_keys=(KEY,),
            timestamp_key=TS,
            features=FEATURES,
            output_names={},
            ttl=ttl,
        )
        chosen = {
            "shuffle_sort": lambda: shuffle_sort(entity, events),
            "point_in_time": lambda: point_in_time_join(entity, [source], "ts"),
            "naive": lambda: naive(entity, events, ttl),
        }
        if args.tempo and has_tempo():
            chosen["tempo"] = lambda: tempo_asof(entity, events, ttl)
        return chosen

    if warm_up:  # JIT-compile every variant's code on a 10% key sample (not the hot key 0)
        sample = F.col(KEY) % 10 == 1
        for build in variants(entity_df.where(sample), features.where(sample)).values():
            run(spark, build, timeout=60.0)
    builds = variants(entity_df, features)
    timings = {
        "shuffle_sort": best(spark, builds["shuffle_sort"], args.repeat, cpu),
        "point_in_time": best(spark, builds["point_in_time"], args.repeat, cpu),
    }
    limit = timings["point_in_time"].seconds * args.naive_timeout_factor
    if "tempo" in builds:
        timings["tempo"] = best(spark, builds["tempo"], args.repeat, cpu, limit)
    timings["naive"] = best(spark, builds["naive"], args.repeat, cpu, limit)
    return timings


def ratio(slow: Timing, fast: Timing, *, cpu: bool = False) -> str:
    """slow / fast; a lower bound (">=") when the slow run was stopped."""
    if cpu:
        assert slow.cpu_seconds is not None and fast.cpu_seconds is not None
        value = slow.cpu_seconds / fast.cpu_seconds
    else:
        value = slow.seconds / fast.seconds
    return f"{value:.2f}x" if slow.finished else f">={value:.1f}x"


def session(args: argparse.Namespace, master: str, root: str) -> SparkSession:
    """A Delta-enabled session on `master` with the Spark UI on (for its REST status API)."""
    conf = {"spark.driver.memory": args.driver_memory}
    if master.startswith("spark://"):
        # Executors start Python workers with the driver's PYSPARK_PYTHON; size them to fit.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf |= {"spark.executor.memory": args.executor_memory, "spark.driver.host": LOOPBACK}
    return get_spark(
        FeatureStoreConfig(
            storage_path=root,
            spark_master=master,
            spark_shuffle_partitions=args.partitions,
            spark_warehouse_dir=f"{root}/warehouse",
            spark_ui_enabled=True,
            spark_conf=conf,
        )
    )


def local_vs_cluster(args: argparse.Namespace, root: str, ttl: timedelta | None) -> None:
    """The point-in-time join and the shuffle-sort floor on --master, then on --cluster."""
    cluster = None
    if args.cluster == "local":
        cluster = LocalStandaloneCluster.start(
            log_dir=f"{root}/cluster", workers=2, worker_cores=1, worker_memory="4g"
        )
    try:
        masters = [args.master, cluster.url if cluster else args.cluster]
        results: dict[str, dict[str, Timing]] = {}
        for index, master in enumerate(masters):
            spark = session(args, master, root)
            if index == 0:
                started = time.perf_counter()
                generate(spark, f"{root}/uniform", args, skew=False)
                print(f"data written to Delta in {time.perf_counter() - started:.1f} s")
            entity_df = spark.read.format("delta").load(f"{root}/uniform/entities")
            events = spark.read.format("delta").load(f"{root}/uniform/features")
            source = PitSource(
                group="customer",
                df=events,
                entity_keys=(KEY,),
                timestamp_key=TS,
                features=FEATURES,
                output_names={},
                ttl=ttl,
            )
            builds: dict[str, Callable[[], DataFrame]] = {
                "point_in_time": partial(point_in_time_join, entity_df, [source], "ts"),
                "shuffle_sort": partial(shuffle_sort, entity_df, events),
            }
            run(spark, builds["point_in_time"], timeout=None)  # warm-up (JIT, jars, workers)
            results[master] = {name: best(spark, build, args.repeat, JvmCpu(spark))
                               for name, build in builds.items()}  # fmt: skip
            print(f"[{master}] " + ", ".join(f"{k} {v} s" for k, v in results[master].items()))
            spark.stop()
    finally:
        if cluster is not None:
            cluster.stop()

    print()
    header = ("pit s", "sort s", "pit/sort", "pit shuffle", "sort shuffle", "pit/sort")
    print("master                   " + " ".join(f"{h:>12}" for h in header))
    for master, t in results.items():
        pit, floor = t["point_in_time"], t["shuffle_sort"]
        pit_read, floor_read = pit.shuffle_read_bytes or 0, floor.shuffle_read_bytes or 0
        cells = (
            str(pit).strip(),
            str(floor).strip(),
            ratio(pit, floor),
            f"{pit_read / 2**20:.1f} MiB",
            f"{floor_read / 2**20:.1f} MiB",
            f"{pit_read / floor_read:.2f}x" if floor_read else "n/a",
        )
        print(f"  {master:<23}" + " ".join(f"{c:>12}" for c in cells))
    (local, remote) = results.values()
    cluster_ratio = remote["point_in_time"].seconds / local["point_in_time"].seconds
    print(f"cluster / local point-in-time wall time: {cluster_ratio:.2f}x")
    print("shuffle read of the join / of one shuffle-sort of the same rows: ~1x means the")
    print("entity and event rows are shuffled once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument(
        "--keys", type=int, default=None, help="distinct keys (default: events / 365)"
    )
    parser.add_argument("--skew", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--ttl-days", type=float, default=None, help="ttl of the group")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--naive-timeout-factor", type=float, default=11.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; best is kept")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--tempo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time dbl-tempo's asofJoin when it is installed",
    )
    parser.add_argument(
        "--cluster",
        metavar="MASTER",
        help="compare the join on --master with the same join on this master "
        "(spark://host:port, or `local` for a standalone cluster started for the run)",
    )
    parser.add_argument(
        "--storage", default=None, help="where the data goes (a path every executor sees)"
    )
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--executor-memory", default="3g", help="on --cluster")
    args = parser.parse_args()
    args.keys = args.keys or max(2, args.events // 365)  # a year of daily events per key
    ttl = timedelta(days=args.ttl_days) if args.ttl_days else None

    with tempfile.TemporaryDirectory(prefix="bench_pit_", dir=args.storage) as root:
        print(
            f"entities={args.entities:,} events={args.events:,} keys={args.keys:,} "
            f"ttl={ttl} master={args.master} cluster={args.cluster} "
            f"shuffle_partitions={args.partitions}"
        )
        if args.cluster:
            local_vs_cluster(args, root, ttl)
            return
        spark = session(args, args.master, root)
        cpu = JvmCpu(spark)
        cases = ["uniform", "skewed"] if args.skew else ["uniform"]
        results: dict[str, dict[str, Timing]] = {}
        for case in cases:
            folder = f"{root}/{case}"
            started = time.perf_counter()
            generate(spark, folder, args, skew=case == "skewed")
            print(f"[{case}] data written to Delta in {time.perf_counter() - started:.1f} s")
            timings = measure(spark, folder, args, ttl, cpu, warm_up=case == cases[0])
            results[case] = timings
            print(f"[{case}] " + ", ".join(f"{k} {v} s" for k, v in timings.items()))

        print()
        header = ("case", "pit s", "naive s", "sort s", "naive/pit", "pit/sort")
        print("wall time      " + " ".join(f"{h:>10}" for h in header[1:]))
        for case, t in results.items():
            pit, bad, floor = t["point_in_time"], t["naive"], t["shuffle_sort"]
            cells = (str(pit), str(bad), str(floor), ratio(bad, pit), ratio(pit, floor))
            print(f"  {case:<12}" + " ".join(f"{c.strip():>10}" for c in cells))
        if all(t.cpu_seconds is not None for r in results.values() for t in r.values()):
            print("JVM CPU time   " + " ".join(f"{h:>10}" for h in header[1:]))
            for case, t in results.items():
                pit, bad, floor = t["point_in_time"], t["naive"], t["shuffle_sort"]
                cells = (
                    pit.cpu(),
                    bad.cpu(),
                    floor.cpu(),
                    ratio(bad, pit, cpu=True),
                    ratio(pit, floor, cpu=True),
                )
                print(f"  {case:<12}" + " ".join(f"{c:>10}" for c in cells))
        if all("tempo" in t for t in results.values()):
            print("dbl-tempo asofJoin / point-in-time join (wall; JVM CPU)")
            for case, t in results.items():
                line = ratio(t["tempo"], t["point_in_time"])
                if t["tempo"].cpu_seconds is not None and t["point_in_time"].cpu_seconds:
                    line += f"; {ratio(t['tempo'], t['point_in_time'], cpu=True)}"
                print(f"  {case:<12} {t['tempo']} s / {t['point_in_time']} s: {line}")
        print(
            "targets: naive/pit >= 3x (uniform), >= 10x (skewed); pit/sort <= 1.15x; "
            "tempo/pit >= 1.3x"
        )
        spark.stop()


if __name__ == "__main__":
    main()
