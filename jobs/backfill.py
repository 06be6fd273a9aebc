"""Scheduled job: replace a time range of a feature group with the source rows in that range.

    spark-submit jobs/backfill.py --config conf/featurelake.yaml \\
        --group transaction_aggregates --source main.raw.txn_daily \\
        --start 2024-03-01 --end 2024-04-01

Rows with start <= event time < end are replaced atomically; rows outside stay untouched.
Exit code 2 for a user error (bad arguments, unknown group, schema violation), 1 for a failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import job_parser, run_job, time_argument
from featurelake.pipeline.sources import FORMATS
from featurelake.pipeline.tasks import materialize, write_summary

NAME = "backfill"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Replace a time range of a feature group from a source.")
    parser.add_argument("--group", required=True, help="GROUP or GROUP@VERSION")
    parser.add_argument("--source", required=True, help="a Delta/Parquet/CSV path or a table")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="source format")
    parser.add_argument("--start", required=True, type=time_argument, help="ISO time, UTC")
    parser.add_argument("--end", required=True, type=time_argument, help="excluded")
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    store = FeatureStore(config, spark)
    result = materialize(
        store,
        args.group,
        args.source,
        start=args.start,
        end=args.end,
        source_format=args.format,
        job=f"jobs/{NAME}.py",
    )
    return write_summary(result)


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
