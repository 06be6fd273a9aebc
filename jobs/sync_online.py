"""Scheduled job: sync the latest feature values from the Gold tables to the online store.

    spark-submit jobs/sync_online.py --config conf/featurelake.yaml --group customer_profile

Incremental by default (the rows changed since the last sync, from Delta's Change Data Feed);
--full re-reads whole tables. Without --group every registered group with data is synced. The config
needs enable_online_store: true and, to serve the values from other processes,
online_backend: redis. Exit code 2 for a user error, 1 for a failure (e.g. Redis unreachable).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from loguru import logger
from pyspark.sql import SparkSession

from featurelake import FeatureStore
from featurelake.config import FeatureStoreConfig, OnlineBackend
from featurelake.errors import ConfigurationError, MaterializationError
from featurelake.pipeline.runtime import job_parser, run_job, time_argument
from featurelake.registry import Registry

NAME = "sync_online"


def since_argument(text: str) -> int | Any:
    """A Delta version (whole number) or a commit time (ISO)."""
    return int(text) if text.strip().isdigit() else time_argument(text)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(NAME, "Sync feature groups from the Gold tables to the online store.")
    parser.add_argument(
        "--group", action="append", default=[], help="GROUP or GROUP@VERSION; repeatable"
    )
    parser.add_argument("--full", action="store_true", help="re-read whole tables")
    parser.add_argument(
        "--since", type=since_argument, help="a Delta version or commit time to start from"
    )
    return parser


def run(
    args: argparse.Namespace, config: FeatureStoreConfig, spark: SparkSession
) -> list[dict[str, Any]]:
    if not config.enable_online_store:
        raise ConfigurationError(
            "The online store is not enabled in the config.",
            fix="set enable_online_store: true and online_backend: redis (with online_url).",
            key="enable_online_store",
        )
    if config.online_backend is OnlineBackend.MEMORY:
        raise ConfigurationError(
            "online_backend is 'memory': values synced by a job would vanish when it exits.",
            fix="set online_backend: redis and online_url in the config the job reads.",
            key="online_backend",
        )
    registry = Registry(config, spark)
    results = []
    with FeatureStore(config, spark, registry=registry) as features:
        groups = args.group or _groups_with_data(features)
        for group in groups:
            synced = features.sync_to_online(group, args.since, full=args.full)
            results.append(dataclasses.asdict(synced))
    return results


def _groups_with_data(features: FeatureStore) -> list[str]:
    names = []
    for schema in features.registry.list_groups():
        try:
            features.offline.read_table(schema)
        except MaterializationError:
            logger.warning("{} has no data yet: not synced", schema.name)
            continue
        names.append(schema.name)
    return names


def main(argv: list[str] | None = None) -> int:
    return run_job(NAME, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
