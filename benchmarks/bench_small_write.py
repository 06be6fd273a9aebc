"""A 1,000-row write in a fresh process: delta-rs small write versus the Spark write path.

    .venv/bin/python benchmarks/bench_small_write.py [--rows 1000] [--repeat 3]

Each run is a new Python process that opens a `FeatureStore` on a store whose group is already
registered and writes one pandas batch of `--rows` rows with `write_features` (append), as a
notebook's quick fix, a test fixture or a server's write does. The same child runs with
`small_write_max_rows` at its default (delta-rs, no Spark) and at 0 (the Spark path, which
starts a session first). Timed: from the parent starting the process to the write's commit
(the child's clock after `write_features` returns), and inside the child the `write_features`
call alone. Prints the medians over `--repeat` alternating runs and the ratio Spark / delta-rs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from featurelake.config import FeatureStoreConfig
from featurelake.schema import FeatureGroupSchema, FeatureSchema
from featurelake.serving.store import FeatureStore

GROUP = FeatureGroupSchema(
    name="customers",
    entity_keys=["customer_id"],
    entity_key_types={"customer_id": "bigint"},
    features=[
        FeatureSchema("age", "int", min_value=0, max_value=130),
        FeatureSchema("segment", "string", allowed_values=["a", "b", "c"]),
        FeatureSchema("score", "double", nullable=False),
    ],
)

CHILD = """
import json, sys, time
started = time.time()
import pandas as pd
from featurelake.config import FeatureStoreConfig
from featurelake.serving.store import FeatureStore

path, rows, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = FeatureStore(FeatureStoreConfig(storage_path=path, small_write_max_rows=limit,
                                        spark_master="local[2]", spark_shuffle_partitions=2))
batch = pd.DataFrame({
    "customer_id": range(rows),
    "event_timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(range(rows), "s"),
    "age": [i % 90 for i in range(rows)],
    "segment": ["abc"[i % 3] for i in range(rows)],
    "score": [i / rows for i in range(rows)],
})
before = time.time()
result = store.write_features("customers", batch)
committed = time.time()
print(json.dumps({"committed": committed, "write_s": committed - before,
                  "engine": result.engine, "rows": result.rows_written}))
"""


def run(path: Path, rows: int, limit: int) -> dict[str, float | str]:
    """One fresh process writing `rows` rows; seconds from its start to the commit."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path), str(rows), str(limit)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {**report, "to_commit_s": float(report["committed"]) - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_small_write_"))
    try:
        paths = {}
        for engine in ("delta-rs", "spark"):
            paths[engine] = root / engine
            FeatureStore(FeatureStoreConfig(storage_path=str(paths[engine]))).register_features(
                GROUP
            )
        limits = {"delta-rs": max(args.rows, 10_000), "spark": 0}
        results: dict[str, list[dict[str, float | str]]] = {"delta-rs": [], "spark": []}
        for _ in range(args.repeat):
            for engine in ("delta-rs", "spark"):
                report = run(paths[engine], args.rows, limits[engine])
                assert report["engine"] == engine and report["rows"] == args.rows, report
                results[engine].append(report)
        load = os.getloadavg()[0]
        print(
            f"{args.rows:,}-row write in a fresh process, median of {args.repeat} (load {load:.1f})"
        )
        medians = {}
        for engine, reports in results.items():
            start = statistics.median(float(r["to_commit_s"]) for r in reports)
            call = statistics.median(float(r["write_s"]) for r in reports)
            medians[engine] = (start, call)
            print(
                f"  {engine:8s}: process start to commit {start:7.2f} s, write call {call:7.3f} s"
            )
        ratio = medians["spark"][0] / medians["delta-rs"][0]
        call_ratio = medians["spark"][1] / medians["delta-rs"][1]
        print(f"  Spark / delta-rs: {ratio:.1f}x to commit, {call_ratio:.0f}x the write call")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
