"""Point-in-time join over Spark Connect against a classic session, in one run.

    .venv/bin/python benchmarks/bench_connect.py                  # 200k entity x 2M event rows
    .venv/bin/python benchmarks/bench_connect.py --entities 1000000 --events 10000000

The Delta input is written once (uniform keys, as in bench_pit.py). Then two worker processes
(a Python process holds one kind of session only) time the same work into the `noop` sink:
  - classic: a local Delta-enabled session in the worker,
  - connect: a Spark Connect client talking to a local Spark Connect server started here with
    the same master, memory and confs (featurelake.connect_server),
each running point_in_time_join and, as a floor, one shuffle-sort of the same rows, after a
warm-up, best of `--repeat`. Printed: seconds per mode and the connect / classic ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pit import FEATURES, KEY, TS, generate, shuffle_sort

from featurelake.config import FeatureStoreConfig
from featurelake.connect_server import LocalConnectServer
from featurelake.engines.spark.pit import PitSource, point_in_time_join
from featurelake.session import get_spark, is_connect_session

RESULT = "RESULT "


def session_config(args: argparse.Namespace, root: str) -> FeatureStoreConfig:
    return FeatureStoreConfig(
        storage_path=root,
        spark_master=args.master,
        spark_shuffle_partitions=args.partitions,
        spark_warehouse_dir=f"{root}/warehouse",
        spark_conf={"spark.driver.memory": args.driver_memory},
    )


def timed(build: Callable[[], DataFrame], repeat: int) -> float:
    """The best wall time of `repeat` runs writing `build()` to the noop sink."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        build().write.format("noop").mode("overwrite").save()
        times.append(time.perf_counter() - started)
    return min(times)


def work(spark: SparkSession, root: str, repeat: int) -> dict[str, float]:
    entity = spark.read.format("delta").load(f"{root}/entities")
    events = spark.read.format("delta").load(f"{root}/features")
    source = PitSource(
        group="customer",
        df=events,
        entity_keys=(KEY,),
        timestamp_key=TS,
        features=FEATURES,
        output_names={},
    )
    builds = {
        "point_in_time": lambda: point_in_time_join(entity, [source], "ts"),
        "shuffle_sort": lambda: shuffle_sort(entity, events),
    }
    timed(builds["point_in_time"], 1)  # warm-up: JIT, Delta snapshot, Python imports
    return {name: timed(build, repeat) for name, build in builds.items()}


def worker(args: argparse.Namespace) -> None:
    config = session_config(args, args.root)
    if args.remote:
        config = replace(config, spark_remote=args.remote)
    spark = get_spark(config)
    assert is_connect_session(spark) == bool(args.remote)
    if args.generate:
        generate(spark, args.root, args, skew=False)
    print(RESULT + json.dumps(work(spark, args.root, args.repeat)), flush=True)
    spark.stop()


def run_worker(args: argparse.Namespace, root: str, *extra: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--root", root, *sys.argv[1:], *extra]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(line for line in output.splitlines() if line.startswith(RESULT))
    return {k: float(v) for k, v in json.loads(line.removeprefix(RESULT)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=None, help="default: events / 365")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant; best is kept")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.keys = args.keys or max(2, args.events // 365)
    if args.worker:
        worker(args)
        return

    print(
        f"entities={args.entities:,} events={args.events:,} keys={args.keys:,} "
        f"master={args.master} shuffle_partitions={args.partitions} repeat={args.repeat}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_connect_") as root:
        classic = run_worker(args, root, "--generate")
        print("classic  " + ", ".join(f"{k} {v:.1f} s" for k, v in classic.items()))
        config = session_config(args, root)
        with LocalConnectServer.start(config, log_dir=root) as server:
            connect = run_worker(args, root, "--remote", server.url)
        print("connect  " + ", ".join(f"{k} {v:.1f} s" for k, v in connect.items()))
    print()
    print(f"{'':16}{'classic s':>10}{'connect s':>11}{'connect/classic':>17}")
    for name in ("point_in_time", "shuffle_sort"):
        ratio = connect[name] / classic[name]
        print(f"  {name:<14}{classic[name]:>10.1f}{connect[name]:>11.1f}{ratio:>16.2f}x")


if __name__ == "__main__":
    main()
