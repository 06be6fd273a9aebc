"""Incremental materialization after a 1% change against a full rebuild, in one process.

    .venv/bin/python benchmarks/bench_incremental.py                 # 10M-row Silver source
    .venv/bin/python benchmarks/bench_incremental.py --rows 2000000 --change 0.01

A Silver Delta table (Change Data Feed on) of --rows rows feeds a group through a SQL query.
After a first full materialization, --change of the rows change in three commits (half of them
updated, a quarter deleted, a quarter inserted), on the newest rows (--pattern recent, as
changes to event data usually are) or spread over the table (--pattern scattered: every Gold
file then holds changed rows; deletion vectors mark them instead of the MERGE rewriting the
files), or only inserted (--pattern appended: new events; the run appends them, no MERGE).
Then, on the same data:
  1. incremental: `materialize_from_source` reads only the change feed and merges into Gold;
  2. baseline: `materialize_from_source(full=True)` recomputes the whole table.
Both Gold tables are compared (same rows), and the ratio full / incremental is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from featurelake.config import FeatureStoreConfig
from featurelake.scheduling import materialize_from_source
from featurelake.schema import FeatureGroupSchema
from featurelake.session import get_spark
from featurelake.stores.base import StoreContext
from featurelake.stores.materialized import MaterializedFeatureStore

QUERY = (
    "SELECT id AS customer_id, ts AS event_timestamp, amount * 1.2 AS spend, "
    "amount > 500 AS big_spender, country FROM {source}"
)
SCHEMA = {
    "name": "bench_spend",
    "entity_keys": ["customer_id"],
    "features": [
        {"name": "spend", "type": "double"},
        {"name": "big_spender", "type": "boolean"},
        {"name": "country", "type": "string"},
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--change", type=float, default=0.01, help="share of rows changed")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--pattern",
        choices=("recent", "scattered", "appended"),
        default="recent",
        help="changes on the newest rows, spread over the whole table, or only new rows",
    )
    args = parser.parse_args()
    print(f"load average at start: {_load()}")
    root = Path(tempfile.mkdtemp(prefix="featurelake-bench-incremental-"))
    config = FeatureStoreConfig(
        storage_path=str(root / "store"),
        spark_master="local[*]",
        spark_shuffle_partitions=args.partitions,
        spark_conf={"spark.driver.memory": "6g", "spark.ui.enabled": "false"},
        gold_deletion_vectors=True,
    )
    spark = get_spark(config)
    from pyspark.sql import functions as F

    silver = str(root / "silver")
    rows = args.rows
    spark.range(rows, numPartitions=args.partitions).select(
        F.col("id"),
        (F.lit("2024-01-01").cast("timestamp") + F.make_interval(secs=F.col("id") % 86400)).alias(
            "ts"
        ),
        (F.col("id") % 1000).cast("double").alias("amount"),
        F.element_at(
            F.array(*[F.lit(c) for c in ("FR", "DE", "ES", "IT")]),
            (F.col("id") % 4 + 1).cast("int"),
        ).alias("country"),
    ).write.format("delta").option("delta.enableChangeDataFeed", "true").save(silver)

    schema = FeatureGroupSchema.from_dict({**SCHEMA, "source": {"table": silver, "query": QUERY}})
    store = MaterializedFeatureStore(StoreContext.of(config, spark))
    store.register_features(schema)
    started = time.perf_counter()
    first = materialize_from_source(store, schema.name)
    print(f"first full materialization of {rows:,} rows: {time.perf_counter() - started:.1f} s")

    changed = max(4, int(rows * args.change))
    table = f"delta.`{silver}`"
    if args.pattern == "scattered":  # spread over the whole table: every Gold file holds some
        updated = f"id % {rows // (changed // 2)} = 1"
        deleted = f"id % {rows // (changed // 4)} = 2"
    else:  # on the newest rows, as changes to event data usually are
        updated = f"id >= {rows - changed} AND id % 2 = 0"
        deleted = f"id >= {rows - changed} AND id % 4 = 1"
    inserted = changed if args.pattern == "appended" else changed // 4
    if args.pattern != "appended":
        spark.sql(f"UPDATE {table} SET amount = amount + 1 WHERE {updated}")
        spark.sql(f"DELETE FROM {table} WHERE {deleted}")
    spark.range(rows, rows + inserted).select(
        "id",
        F.lit("2024-01-02").cast("timestamp").alias("ts"),
        F.lit(7.0).alias("amount"),
        F.lit("NL").alias("country"),
    ).write.format("delta").mode("append").save(silver)
    commits = 1 if args.pattern == "appended" else 3
    print(f"changed ~{changed:,} rows ({args.change:.1%}, {args.pattern}) in {commits} commits")

    started = time.perf_counter()
    incremental = materialize_from_source(store, schema.name)
    incremental_s = time.perf_counter() - started
    assert incremental.mode == "incremental", incremental
    commit = store.history(schema.name)[0]
    merge = commit.metrics
    files = len(
        store.spark.read.format("delta").load(str(store.location(schema.name).path)).inputFiles()
    )
    if commit.operation != "MERGE":
        print(f"  its Gold commit: {commit.operation}; the table now has {files} files")
    else:
        _print_merge(merge, files)

    rebuilt_config = config.replace(storage_path=str(root / "rebuilt"))
    rebuilt = MaterializedFeatureStore(StoreContext.of(rebuilt_config, spark))
    rebuilt.register_features(schema)
    started = time.perf_counter()
    materialize_from_source(rebuilt, schema.name, full=True)
    full_s = time.perf_counter() - started

    columns = list(schema.columns)
    left = store.read_table(schema.name).select(*columns)
    right = rebuilt.read_table(schema.name).select(*columns)
    same = left.exceptAll(right).isEmpty() and right.exceptAll(left).isEmpty()
    print(
        f"incremental run: {incremental_s:.1f} s ({incremental.rows_written:,} rows written)\n"
        f"full rebuild:    {full_s:.1f} s\n"
        f"full / incremental: {full_s / incremental_s:.1f}x   same table: {same}"
    )
    print(f"load average at end: {_load()}")
    del first
    spark.stop()


def _print_merge(merge: dict[str, str], files: int) -> None:
    print(
        f"  its Gold MERGE: {int(merge.get('executionTimeMs', 0)) / 1000:.1f} s "
        f"(scan {int(merge.get('scanTimeMs', 0)) / 1000:.1f} s, "
        f"rewrite {int(merge.get('rewriteTimeMs', 0)) / 1000:.1f} s), "
        f"{merge.get('numTargetFilesRemoved', '?')} files rewritten, "
        f"{merge.get('numTargetDeletionVectorsAdded', '0')} deletion vectors added, "
        f"{merge.get('numTargetRowsCopied', '?')} unchanged rows copied; "
        f"the table now has {files} files"
    )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
