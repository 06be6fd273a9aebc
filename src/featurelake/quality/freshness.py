"""Freshness of a group: the age of its newest event and of its last materialization.

Both are compared with the group's declared `freshness`. The newest event comes from the Gold
table's Delta log statistics (delta-rs, no data scan) on local stores, else from a Spark
`max()`; the last materialization is the newest of the group's recorded writes and its
successful scheduled or streaming runs (a run that found nothing new still counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.registry import Registry, TableLocation
from featurelake.registry.registry import WRITE, group_key
from featurelake.schema import FeatureGroupSchema
from featurelake.storage import is_delta_table, is_local, is_object_store, open_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MATERIALIZATION_RUN = "materialization_run"
"""Registry event kind of a scheduled / incremental / streaming run (written by scheduling)."""

FRESH = "fresh"
STALE = "stale"
NO_DATA = "no data"
NO_TARGET = "no target"


@dataclass(frozen=True)
class GroupFreshness:
    """How old a group's data is, against its declared `freshness`.

    `status`: `fresh`, `stale` (either age is over the limit, or a limit is set and nothing
    was materialized), `no data` (nothing yet, no limit) or `no target` (no limit declared).
    """

    group: str
    version: int
    max_age: timedelta | None
    newest_event: datetime | None
    last_materialized: datetime | None
    checked_at: datetime

    @property
    def event_age(self) -> timedelta | None:
        return None if self.newest_event is None else self.checked_at - self.newest_event

    @property
    def materialization_age(self) -> timedelta | None:
        if self.last_materialized is None:
            return None
        return self.checked_at - self.last_materialized

    @property
    def stale_reasons(self) -> list[str]:
        """Why the group is stale (empty when it is not)."""
        if self.max_age is None:
            return []
        reasons = []
        if self.newest_event is None:
            reasons.append("no events materialized")
        elif self.event_age is not None and self.event_age > self.max_age:
            reasons.append("newest event older than the limit")
        if self.last_materialized is None:
            reasons.append("never materialized")
        elif self.materialization_age is not None and self.materialization_age > self.max_age:
            reasons.append("last materialization older than the limit")
        return reasons

    @property
    def status(self) -> str:
        if self.max_age is None:
            return NO_TARGET if self.last_materialized is not None else NO_DATA
        return STALE if self.stale_reasons else FRESH

    @property
    def stale(self) -> bool:
        return self.status == STALE

    def to_dict(self) -> dict[str, Any]:
        def seconds(value: timedelta | None) -> float | None:
            return None if value is None else round(value.total_seconds(), 1)

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "group": self.group,
            "version": self.version,
            "status": self.status,
            "stale_reasons": self.stale_reasons,
            "max_age_seconds": seconds(self.max_age),
            "newest_event": iso(self.newest_event),
            "event_age_seconds": seconds(self.event_age),
            "last_materialized": iso(self.last_materialized),
            "materialization_age_seconds": seconds(self.materialization_age),
            "checked_at": iso(self.checked_at),
        }


def group_freshness(
    registry: Registry,
    schema: FeatureGroupSchema,
    *,
    spark: SparkSession | None = None,
    now: datetime | None = None,
) -> GroupFreshness:
    """The freshness of one registered group version (`now`: naive UTC, default the clock)."""
    checked = now or datetime.now(UTC).replace(tzinfo=None)
    location = registry.gold_location(schema.name, schema.version)
    return GroupFreshness(
        group=schema.name,
        version=schema.version,
        max_age=schema.freshness,
        newest_event=newest_event(registry, schema, location, spark),
        last_materialized=last_materialized(registry, schema),
        checked_at=checked,
    )


def last_materialized(registry: Registry, schema: FeatureGroupSchema) -> datetime | None:
    """When the group last received a write or finished a successful run (naive UTC)."""
    key = group_key(schema.name, schema.version)
    times = [e["recorded_at"] for e in registry.events(WRITE, key) if e.get("recorded_at")]
    times += [
        e["recorded_at"]
        for e in registry.events(MATERIALIZATION_RUN, key)
        if e.get("outcome") == "succeeded" and e.get("recorded_at")
    ]
    return max(times) if times else None


def newest_event(
    registry: Registry,
    schema: FeatureGroupSchema,
    location: TableLocation,
    spark: SparkSession | None = None,
) -> datetime | None:
    """The greatest event time in the Gold table, or None when it has no rows or no table."""
    local = _log_statistics_max(location, schema.timestamp_key)
    if local is not _UNKNOWN:
        return local  # type: ignore[return-value]
    from pyspark.sql import functions as F

    session = spark or registry.spark
    reader = session.read.format("delta")
    try:
        frame = (
            reader.table(location.table_name) if location.table_name else reader.load(location.path)
        )
        row = frame.agg(F.max(schema.timestamp_key)).first()
    except Exception as error:
        text = str(error)
        if any(
            m in text
            for m in (
                "PATH_NOT_FOUND",
                "DELTA_MISSING",
                "not a Delta table",
                "TABLE_OR_VIEW_NOT_FOUND",
                "doesn't exist",
            )
        ):
            return None
        raise
    return None if row is None else row[0]


_UNKNOWN = object()


def _log_statistics_max(location: TableLocation, column: str) -> object:
    """Max of `column` from the Delta log's file statistics (delta-rs), or `_UNKNOWN`."""
    path = location.path
    if location.table_name or not path or not (is_local(path) or is_object_store(path)):
        return _UNKNOWN
    try:
        import pyarrow as pa
    except ImportError:
        return _UNKNOWN
    if not is_delta_table(path):
        return None
    actions = pa.table(open_table(path).get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    name = f"max.{column}"
    if name not in actions.column_names:
        return _UNKNOWN
    values = actions.column(name).to_pylist()
    counts = actions.column("num_records").to_pylist()
    if any(v is None and (c is None or c > 0) for v, c in zip(values, counts, strict=True)):
        return _UNKNOWN  # a file without statistics: ask Spark
    present = [v for v in values if v is not None]
    if not present:
        return None
    newest = max(present)
    if isinstance(newest, datetime) and newest.tzinfo is not None:
        newest = newest.astimezone(UTC).replace(tzinfo=None)
    return newest
