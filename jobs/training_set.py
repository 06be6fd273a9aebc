"""Scheduled job: build a point-in-time-correct training set and write it.

    spark-submit jobs/training_set.py --config conf/featurelake.yaml \\
        --entities s3://ml/churn/labels.parquet \\
        --features customer_profile.* transaction_aggregates.txn_count_7d \\
        --out s3://ml/churn/training/2024-03 --name churn_2024_03 --overwrite

Each entity row (keys + event time) gets every feature's latest value at or before its time.
With --name the manifest (the Delta version of every table read) is kept in the store, so the
set can be rebuilt exactly. Exit code 2 for a user error, 1 for a failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import job_parser, run_job
from featurelake.pipeline.sources import FORMATS, OUTPUT_FORMATS
from featurelake.pipeline.tasks import training_set

NAME = "training_set"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Build a point-in-time-correct training set.")
    parser.add_argument("--entities", required=True, help="entity rows: a path or a table")
    parser.add_argument("--entities-format", default="auto", choices=FORMATS)
    parser.add_argument(
        "--features", required=True, nargs="+", help="refs: group.feature, group.*, group@2.f"
    )
    parser.add_argument("--out", required=True, help="output path or table")
    parser.add_argument("--out-format", default="parquet", choices=OUTPUT_FORMATS)
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--ttl", help="max age of a value, e.g. 7d (default: each group's ttl)")
    parser.add_argument("--timestamp-column", help="event time column of the entity rows")
    parser.add_argument("--fill", default="none", choices=["none", "last_non_null"])
    parser.add_argument("--name", help="keep the manifest in the store under this name")
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    store = FeatureStore(config, spark)
    result = training_set(
        store,
        args.entities,
        args.features,
        args.out,
        out_format=args.out_format,
        overwrite=args.overwrite,
        ttl=args.ttl,
        timestamp_column=args.timestamp_column,
        fill=args.fill,
        name=args.name,
        entities_format=args.entities_format,
    )
    return result.to_dict()


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
