"""Scheduled job: materialize a group from the source its schema declares.

    spark-submit jobs/materialize_source.py --config conf/featurelake.yaml --group spend

Reads only the source's changes since the last run (Delta Change Data Feed; the watermark is in
the registry), or everything on the first run or with --full; merges into the Gold table and
records the run. What `featurelake schedule export` schedules (Databricks, Airflow, cron).
With `sync_to_online: true` the written rows are synced online too. Exit code 2 for a user
error (no source declared, a batch that breaks its schema), 1 for a failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import job_parser, run_job
from featurelake.scheduling import materialize_from_source

NAME = "materialize_source"


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Materialize a feature group from its declared source.")
    parser.add_argument("--group", required=True, help="GROUP or GROUP@VERSION")
    parser.add_argument("--full", action="store_true", help="recompute the whole table")
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    with FeatureStore(config, spark) as features:
        run = materialize_from_source(
            features.offline, args.group, full=args.full, job=f"jobs/{NAME}.py"
        )
    return run.to_dict()


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
