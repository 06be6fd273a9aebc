"""Keeping feature groups fresh: incremental materialization from a declared source, cron
schedules (a local runner, or exports for Databricks Jobs, Airflow and crontab) and Structured
Streaming ingestion."""

from featurelake.scheduling.incremental import (
    MaterializationRun,
    materialize_from_source,
    watermark,
)

__all__ = ["MaterializationRun", "materialize_from_source", "watermark"]
