"""Scheduled job: move the records written over HTTP from the staging table into Gold.

    spark-submit jobs/compact_staging.py --config conf/featurelake.yaml

The feature server appends every accepted write to `{storage_path}/_server/staging` (and the
online store). This job reads what was staged since its last run (the table's Change Data
Feed), checks the records against their group version again, keeps the last staged record per
entity and event time, and merges them into each group's Gold table through the materialized
store (quality checks, statistics and the registry's write history included). Run it as often
as Gold should catch up (e.g. every 5 to 15 minutes). Exit code 2 for a user error, 1 for a
failure; a failed group leaves the watermark where it was, so the next run retries it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig
from featurelake.pipeline.runtime import job_parser, run_job
from featurelake.server.staging import compact_staging

NAME = "compact_staging"


def build_parser() -> argparse.ArgumentParser:
    return job_parser(NAME, "Merge the records staged by the feature server into Gold.")


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> dict[str, Any]:
    with FeatureStore(config, spark) as features:
        result = compact_staging(features)
    return {
        "from_version": result.from_version,
        "to_version": result.to_version,
        "records": result.records,
        "groups": [dataclasses.asdict(g) for g in result.groups],
        "duration_seconds": round(result.duration_seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
