"""Keeping feature groups fresh: incremental materialization from a declared source, cron
schedules (a local runner, or exports for Databricks Jobs, Airflow and crontab) and Structured
Streaming ingestion."""

from featurelake.scheduling.export import ExportSettings, export
from featurelake.scheduling.incremental import (
    MaterializationRun,
    materialize_from_source,
    watermark,
)
from featurelake.scheduling.runner import Scheduler, SlotRun
from featurelake.scheduling.streaming import (
    FeatureStream,
    StreamBatch,
    request_stop,
    start_stream,
)
from featurelake.schema.materialization import MaterializationSource

__all__ = [
    "ExportSettings",
    "FeatureStream",
    "MaterializationRun",
    "MaterializationSource",
    "Scheduler",
    "SlotRun",
    "StreamBatch",
    "export",
    "materialize_from_source",
    "request_stop",
    "start_stream",
    "watermark",
]
