"""On-demand quality of a group's Gold table, and wiring the quality layer into a store's writes.

The quality layer may not import the stores (they sit above it), so a store is taken
by its shape (`QualityAttachable`): `attach_quality(store)` registers `QualityGate` as the
store's batch hook (rules run on every write, before Delta commits) and a write listener that
records statistics and drift of each new Delta version in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from featurelake.quality.checks import CheckReport, QualityGate, evaluate_checks, record_report
from featurelake.quality.drift import DRIFT, drift
from featurelake.quality.incremental import fold_append, recorded, summary_drift
from featurelake.quality.stats import GroupStatistics, profile, record_statistics
from featurelake.quality.tables import appended_rows, latest_version, read_version, resolve
from featurelake.registry import Registry, group_key
from featurelake.schema.model import FeatureGroupSchema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class QualityAttachable(Protocol):
    """What `attach_quality` needs of a store (MaterializedFeatureStore has it)."""

    registry: Registry

    @property
    def spark(self) -> SparkSession: ...

    @property
    def started_spark(self) -> SparkSession | None: ...

    def add_batch_hook(
        self, hook: Callable[[FeatureGroupSchema, DataFrame, str], DataFrame]
    ) -> None: ...

    def add_write_listener(self, listener: Callable[[Any], None]) -> None: ...


def statistics(
    registry: Registry,
    group: str | FeatureGroupSchema,
    *,
    delta_version: int | None = None,
    spark: SparkSession | None = None,
    record: bool = True,
) -> GroupStatistics:
    """Statistics of a group's Gold table at `delta_version` (default: the newest).

    Stored as a `stats` event of `group@version` unless `record=False`.
    """
    schema = resolve(registry, group)
    session = spark or registry.spark
    location = registry.gold_location(schema.name, schema.version)
    version = delta_version if delta_version is not None else latest_version(session, location)
    stats, summaries = profile(
        read_version(session, location, version), schema, delta_version=version
    )
    if record:
        record_statistics(registry, stats, summaries)
    return stats


def statistics_of_append(
    registry: Registry,
    group: str | FeatureGroupSchema,
    delta_version: int,
    *,
    spark: SparkSession | None = None,
    drift_too: bool = True,
) -> bool:
    """Record the statistics of `delta_version`, a commit that only appended rows, from those
    recorded for the version before it and a profile of the appended rows (and, with
    `drift_too`, the drift between both versions from their summaries): the cost of the rows
    written, not of the table. False (nothing recorded) when the previous version has no
    recorded summaries; `statistics` then reads the whole version."""
    schema = resolve(registry, group)
    previous = recorded(registry, schema, delta_version - 1)
    if previous is None:
        return False
    session = spark or registry.spark
    location = registry.gold_location(schema.name, schema.version)
    stats, summaries = fold_append(
        *previous,
        appended_rows(session, location, delta_version),
        schema,
        delta_version=delta_version,
    )
    record_statistics(registry, stats, summaries)
    if drift_too:
        report = summary_drift(*previous, stats, summaries, schema)
        registry.append_event(DRIFT, group_key(schema.name, schema.version), report.to_dict())
        _warn_drift(report)
    return True


def check(
    registry: Registry,
    group: str | FeatureGroupSchema,
    *,
    delta_version: int | None = None,
    spark: SparkSession | None = None,
    now: datetime | None = None,
    record: bool = True,
) -> CheckReport:
    """Run a group's rules over its Gold table (at `delta_version`, default the newest)."""
    schema = resolve(registry, group)
    session = spark or registry.spark
    location = registry.gold_location(schema.name, schema.version)
    version = delta_version if delta_version is not None else latest_version(session, location)
    report = evaluate_checks(
        read_version(session, location, version), schema, now=now, delta_version=version
    )
    if record:
        record_report(registry, report)
    return report


def attach_quality(
    store: QualityAttachable, *, statistics_on_write: bool = True, drift_on_write: bool = True
) -> QualityGate:
    """Check every batch written through `store`, and profile each new Delta version.

    Returns the gate (its `last_report` is the latest batch's `CheckReport`).
    """
    gate = QualityGate(store.registry)
    store.add_batch_hook(gate)

    def after_write(result: Any) -> None:
        name, version, delta_version = result.group, result.version, result.delta_version
        if getattr(result, "engine", "spark") != "spark" and store.started_spark is None:
            # A small write without Spark does not start it to profile a few rows; the next
            # Spark write (or `store.statistics(group)`) profiles the table.
            logger.debug("group {} v{}: no statistics for a write without Spark", name, version)
            return
        group = f"{name}@{version}"
        if (
            statistics_on_write
            and result.mode == "append"
            and statistics_of_append(
                store.registry,
                group,
                delta_version,
                spark=store.spark,
                drift_too=drift_on_write and delta_version > 1,
            )
        ):
            return
        if statistics_on_write:
            statistics(store.registry, group, delta_version=delta_version, spark=store.spark)
        if drift_on_write and delta_version > 1:
            _warn_drift(
                drift(store.registry, group, current_version=delta_version, spark=store.spark)
            )

    if statistics_on_write or drift_on_write:
        store.add_write_listener(after_write)
    return gate


def _warn_drift(report: Any) -> None:
    if report.drifted:
        logger.warning(
            "group {} v{}: features {} drifted against {}",
            report.group,
            report.version,
            report.drifted,
            report.reference,
        )


def attach_configured_quality(store: QualityAttachable) -> QualityGate | None:
    """`attach_quality(store)` when the store's config has `quality_on_write` (the default)."""
    config = getattr(store, "config", None)
    if config is not None and not getattr(config, "quality_on_write", True):
        return None
    return attach_quality(store)
