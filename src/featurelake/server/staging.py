"""The staging table of HTTP writes, and the compaction that moves staged records into Gold.

A write over HTTP is small: committing it to a group's Gold table (a Spark job, statistics,
a Delta commit per request) would cost seconds. Instead each accepted batch is appended, with
delta-rs, to one append-only Delta table `{storage_path}/_server/staging` (one row per record:
group, version, entity, event time, the record as JSON, when and by which key) and written to
the online store. `compact_staging` (the `jobs/compact_staging.py` job) later reads the records
staged since the last compaction from the table's Change Data Feed and merges them into each
group's Gold table through the materialized store, so they are validated, checked for quality
and recorded in the registry like any other write. The watermark (last compacted staging
version) lives in the registry; merging on keys + event time makes a re-run harmless.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurelake.errors import ConcurrentWriteError, FeatureStoreError, MaterializationError
from featurelake.online.values import entity_id
from featurelake.schema import FeatureGroupSchema
from featurelake.server.audit import server_table_path
from featurelake.server.rows import RowChecker

if TYPE_CHECKING:
    from featurelake.config import FeatureStoreConfig
    from featurelake.serving import FeatureStore

STAGING_SCHEMA = pa.schema(
    [
        pa.field("group", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("staged_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("key_id", pa.string()),
    ]
)
WATERMARK_KIND = "staging_compaction"
WATERMARK_KEY = "staging"


class StagingTable:
    """The append-only Delta table of records written over HTTP (delta-rs, no Spark)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ready = False

    @classmethod
    def for_store(cls, config: FeatureStoreConfig) -> StagingTable:
        return cls(server_table_path(config, "staging"))

    def ensure(self) -> None:
        """Create the table (with Change Data Feed on) when it does not exist yet."""
        from deltalake import DeltaTable

        if self._ready or DeltaTable.is_deltatable(self.path):
            self._ready = True
            return
        try:
            DeltaTable.create(
                self.path,
                STAGING_SCHEMA,
                mode="ignore",
                configuration={"delta.enableChangeDataFeed": "true"},
            )
        except Exception as error:
            if not DeltaTable.is_deltatable(self.path):
                raise ConcurrentWriteError(
                    f"The staging table {self.path} is being created by another writer.",
                    fix="retry the write.",
                ) from error
        self._ready = True

    def append(
        self,
        schema: FeatureGroupSchema,
        records: Sequence[Mapping[str, Any]],
        typed: Sequence[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        key_id: str | None = None,
    ) -> int:
        """Append checked records (one commit); returns the staging table's new version."""
        from deltalake import DeltaTable, write_deltalake

        self.ensure()
        now = datetime.now(UTC)
        rows = [
            {
                "group": schema.name,
                "version": schema.version,
                "entity": entity_id(schema.entity_keys, row),
                "event_time": row[schema.timestamp_key].replace(tzinfo=UTC),
                "payload": json.dumps(dict(record), separators=(",", ":")),
                "staged_at": now,
                "request_id": request_id,
                "key_id": key_id,
            }
            for record, row in zip(records, typed, strict=True)
        ]
        write_deltalake(self.path, pa.Table.from_pylist(rows, schema=STAGING_SCHEMA), mode="append")
        return int(DeltaTable(self.path).version())

    def version(self) -> int | None:
        """The current Delta version, or None when nothing was ever staged."""
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(self.path):
            return None
        return int(DeltaTable(self.path).version())

    def changes(self, first: int, last: int) -> list[dict[str, Any]]:
        """Records committed in versions `first..last` (inclusive), in commit order."""
        from deltalake import DeltaTable

        reader = DeltaTable(self.path).load_cdf(starting_version=first, ending_version=last)
        rows = pa.table(reader.read_all()).to_pylist()
        rows = [r for r in rows if r.get("_change_type") == "insert"]
        rows.sort(key=lambda r: (r["_commit_version"], r["staged_at"]))
        return rows

    def pending(self, registry: Any, group: str | None = None, version: int | None = None) -> int:
        """Staged records (of one group version, or all) not compacted into Gold yet."""
        current = self.version()
        if current is None:
            return 0
        done = compacted_version(registry)
        if done >= current:
            return 0
        return sum(
            1
            for row in self.changes(done + 1, current)
            if (group is None or row["group"] == group)
            and (version is None or row["version"] == version)
        )


def compacted_version(registry: Any) -> int:
    """The last staging version compacted into Gold (0: none; version 0 holds no rows)."""
    payload = registry.get_object(WATERMARK_KIND, WATERMARK_KEY)
    return int(payload["staging_version"]) if payload else 0


@dataclass(frozen=True)
class GroupCompaction:
    """Staged records of one group version merged into its Gold table."""

    group: str
    version: int
    records: int
    rows_merged: int
    gold_delta_version: int


@dataclass(frozen=True)
class CompactionResult:
    """What `compact_staging` did: staging versions `from_version..to_version`, per group."""

    from_version: int | None
    to_version: int | None
    groups: list[GroupCompaction] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(g.records for g in self.groups)


def compact_staging(store: FeatureStore, table: StagingTable | None = None) -> CompactionResult:
    """Merge every record staged since the last compaction into its group's Gold table.

    Records are checked against the group version they were staged for, deduplicated on
    entity keys + event time (the last staged wins) and merged (upsert) through the store's
    materialized store. The watermark moves only when every group merged; a group that fails
    is named in a MaterializationError after the others are merged (merging again is safe).
    """
    started = time.perf_counter()
    staging = table or StagingTable.for_store(store.config)
    current = staging.version()
    done = compacted_version(store.registry)
    if current is None or current <= done:
        return CompactionResult(None, current, [], time.perf_counter() - started)
    by_group: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in staging.changes(done + 1, current):
        by_group.setdefault((row["group"], int(row["version"])), []).append(row)
    results: list[GroupCompaction] = []
    failures: list[str] = []
    for (name, version), rows in sorted(by_group.items()):
        try:
            results.append(_merge_group(store, name, version, rows))
        except FeatureStoreError as error:
            failures.append(f"{name}@{version}: {error}")
    if failures:
        raise MaterializationError(
            f"Compacting staged records failed for {len(failures)} group(s): "
            + "; ".join(failures),
            fix="correct the cause and run the compaction again; groups already merged are "
            "merged again harmlessly, and nothing staged is lost.",
        )
    store.registry.put_object(
        WATERMARK_KIND,
        WATERMARK_KEY,
        {"staging_version": current, "at": datetime.now(UTC).isoformat(timespec="seconds")},
    )
    return CompactionResult(done + 1, current, results, time.perf_counter() - started)


def _merge_group(
    store: FeatureStore, name: str, version: int, rows: list[dict[str, Any]]
) -> GroupCompaction:
    import pandas as pd

    schema = store.registry.get_group(name, version)
    typed = RowChecker(schema).check([json.loads(r["payload"]) for r in rows])
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in typed:  # commit order: the last staged record of a key + time wins
        latest[(*[row[k] for k in schema.entity_keys], row[schema.timestamp_key])] = row
    frame = pd.DataFrame(list(latest.values()), columns=list(schema.columns), dtype=object)
    result = store.write_features(f"{name}@{version}", frame, mode="merge")
    return GroupCompaction(name, version, len(rows), result.rows_written, result.delta_version)
