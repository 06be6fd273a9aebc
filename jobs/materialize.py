"""Scheduled job: write a source (Delta/Parquet/CSV path or table) into a feature group.

    spark-submit jobs/materialize.py --config conf/featurelake.yaml \\
        --group customer_profile --source s3://raw/customer_profile/2024-03-01 --mode merge

With --start and --end the source rows in [start, end) replace that range of the table (a
backfill). Uses the session spark-submit (or Databricks) provides; exit code 2 for a user error
(bad arguments, unknown group, schema violation), 1 for a failure.
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
from featurelake.stores.materialized import WriteMode

NAME = "materialize"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Write a source into a feature group's Gold table.")
    parser.add_argument("--group", required=True, help="GROUP or GROUP@VERSION")
    parser.add_argument("--source", required=True, help="a Delta/Parquet/CSV path or a table")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="source format")
    parser.add_argument(
        "--mode", default=WriteMode.APPEND.value, choices=[m.value for m in WriteMode]
    )
    parser.add_argument("--start", type=time_argument, help="backfill from (ISO time, UTC)")
    parser.add_argument("--end", type=time_argument, help="backfill up to, excluded")
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    store = FeatureStore(config, spark)
    result = materialize(
        store,
        args.group,
        args.source,
        mode=args.mode,
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
