"""The staging table of HTTP writes, and the compaction that moves staged records into Gold.

A write over HTTP is small: committing it to a group's Gold table (a Spark job, statistics,
a Delta commit per request) would cost seconds. Instead each accepted batch is appended, with
delta-rs, to one append-only Delta table `{storage_path}/_server/staging` (one row per record:
group, version, entity, event time, the record as JSON, the group schema it was checked
against, when and by which key) and written to the online store. `compact_staging` (the
`jobs/compact_staging.py` job) later reads the records staged since the last compaction from
the table's Change Data Feed and merges them into each group's Gold table through the
materialized store, so they are validated, checked for quality and recorded in the registry
like any other write.

Each group version has its own watermark (the last staging version merged for it, in the
registry), so a group that fails leaves the others alone: they are not merged again on the
next run. A record is checked again against the schema it was staged under, then against the
group's current schema (a compatible change such as a tighter `max` may refuse it); a record
that cannot be merged goes to the dead-letter table `{storage_path}/_server/dead_letters` with
the reason (see `GET /v1/features/{group}` and `featurelake dead-letters`), and compaction
moves on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurelake.errors import (
    ConcurrentWriteError,
    FeatureStoreError,
    MaterializationError,
    SchemaValidationError,
)
from featurelake.online.values import entity_id
from featurelake.schema import FeatureGroupSchema
from featurelake.server.audit import server_table_path
from featurelake.server.rows import RowChecker
from featurelake.storage import (
    create_table,
    is_delta_table,
    open_table,
    write_table,
    write_verified,
)

if TYPE_CHECKING:
    from featurelake.config import FeatureStoreConfig
    from featurelake.serving import FeatureStore

_STAGED_ROW = [
    pa.field("group", pa.string(), nullable=False),
    pa.field("version", pa.int32(), nullable=False),
    pa.field("entity", pa.string(), nullable=False),
    pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("payload", pa.string(), nullable=False),
    pa.field("staged_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
"""The columns a staged row and its dead letter share."""
STAGING_SCHEMA = pa.schema(
    [
        *_STAGED_ROW,
        pa.field("request_id", pa.string()),
        pa.field("key_id", pa.string()),
        pa.field("schema", pa.string()),
    ]
)
DEAD_LETTER_SCHEMA = pa.schema(
    [
        *_STAGED_ROW,
        pa.field("staging_version", pa.int64(), nullable=False),
        pa.field("key_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("dead_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
WATERMARK_KIND = "staging_compaction"
WATERMARK_KEY = "staging"
MAX_REASON = 2_000


class StagingTable:
    """The append-only Delta table of records written over HTTP (delta-rs, no Spark)."""

    def __init__(self, path: str, dead_letters: DeadLetterTable | None = None) -> None:
        self.path = path
        self.dead_letters = dead_letters or DeadLetterTable(f"{path.rstrip('/')}_dead_letters")
        self._ready = False
        self._pending: tuple[tuple[int, int], dict[tuple[str, int], list[int]]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_store(cls, config: FeatureStoreConfig) -> StagingTable:
        return cls(
            server_table_path(config, "staging"),
            DeadLetterTable(server_table_path(config, "dead_letters")),
        )

    def ensure(self) -> None:
        """Create the table (with Change Data Feed on) when it does not exist yet."""
        if self._ready or is_delta_table(self.path):
            self._ready = True
            return
        try:
            create_table(
                self.path,
                STAGING_SCHEMA,
                mode="ignore",
                configuration={"delta.enableChangeDataFeed": "true"},
            )
        except Exception as error:
            if not is_delta_table(self.path):
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
        """Append checked records (one commit); returns the version holding them."""
        self.ensure()
        now = datetime.now(UTC)
        staged_schema = json.dumps(schema.to_dict(), separators=(",", ":"), sort_keys=True)
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
                "schema": staged_schema,
            }
            for record, row in zip(records, typed, strict=True)
        ]
        table = pa.Table.from_pylist(rows, schema=STAGING_SCHEMA)
        # (schema_mode merge: tables staged before the schema column gain it)
        return write_verified(self.path, table, mode="append", schema_mode="merge")

    def version(self) -> int | None:
        """The current Delta version, or None when nothing was ever staged."""
        if not is_delta_table(self.path):
            return None
        return int(open_table(self.path).version())

    def changes(self, first: int, last: int) -> list[dict[str, Any]]:
        """Records committed in versions `first..last` (inclusive), in commit order."""
        reader = open_table(self.path).load_cdf(starting_version=first, ending_version=last)
        rows = pa.table(reader.read_all()).to_pylist()
        rows = [r for r in rows if r.get("_change_type") == "insert"]
        rows.sort(key=lambda r: (r["_commit_version"], r["staged_at"]))
        return rows

    def pending(self, registry: Any, group: str | None = None, version: int | None = None) -> int:
        """Staged records (of one group version, or all) not compacted into Gold yet.

        The staged rows past the oldest watermark are read once per staging version and
        watermark (then counted from memory), not on every call."""
        current = self.version()
        if current is None:
            return 0
        floor = compacted_version(registry)
        if floor >= current:
            return 0
        with self._lock:
            cached = self._pending
        if cached is None or cached[0] != (floor, current):
            versions: dict[tuple[str, int], list[int]] = {}
            for row in self.changes(floor + 1, current):
                key = (row["group"], int(row["version"]))
                versions.setdefault(key, []).append(int(row["_commit_version"]))
            cached = ((floor, current), versions)
            with self._lock:
                self._pending = cached
        marks = group_watermarks(registry)
        return sum(
            sum(1 for v in commits if v > max(floor, marks.get(key, 0)))
            for key, commits in cached[1].items()
            if (group is None or key[0] == group) and (version is None or key[1] == version)
        )


class DeadLetterTable:
    """Staged records compaction could not merge, with the reason (append-only, delta-rs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def append(self, rows: Sequence[Mapping[str, Any]], reason: str) -> int:
        """Put staged rows (as `StagingTable.changes` gives them) aside; how many."""
        if not rows:
            return 0
        now = datetime.now(UTC)
        table = pa.Table.from_pylist(
            [
                {
                    "group": r["group"],
                    "version": int(r["version"]),
                    "entity": r["entity"],
                    "event_time": r["event_time"],
                    "payload": r["payload"],
                    "staged_at": r["staged_at"],
                    "staging_version": int(r["_commit_version"]),
                    "key_id": r.get("key_id"),
                    "reason": reason[:MAX_REASON],
                    "dead_at": now,
                }
                for r in rows
            ],
            schema=DEAD_LETTER_SCHEMA,
        )
        write_table(self.path, table, mode="append")
        return len(rows)

    def read(
        self, group: str | None = None, version: int | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters (of one group or version), newest first."""
        if not is_delta_table(self.path):
            return []
        filters: list[tuple[str, str, Any]] = []
        if group is not None:
            filters.append(("group", "=", group))
        if version is not None:
            filters.append(("version", "=", version))
        rows = pa.table(open_table(self.path).to_pyarrow_table(filters=filters or None))
        found = rows.to_pylist()
        found.sort(key=lambda r: (r["dead_at"], r["staging_version"]), reverse=True)
        return found[:limit] if limit is not None else found

    def count(self, group: str | None = None, version: int | None = None) -> int:
        """How many dead letters (of one group or version) there are."""
        if not is_delta_table(self.path):
            return 0
        filters: list[tuple[str, str, Any]] = []
        if group is not None:
            filters.append(("group", "=", group))
        if version is not None:
            filters.append(("version", "=", version))
        table = open_table(self.path).to_pyarrow_table(columns=["group"], filters=filters or None)
        return int(table.num_rows)


def _group_mark_key(group: str, version: int) -> str:
    return f"group:{group}@{version}"


def compacted_version(registry: Any, group: str | None = None, version: int | None = None) -> int:
    """The last staging version compacted into Gold, for every group (the default) or for
    one group version (0: none; version 0 holds no rows)."""
    payload = registry.get_object(WATERMARK_KIND, WATERMARK_KEY)
    floor = int(payload["staging_version"]) if payload else 0
    if group is None:
        return floor
    mark = group_watermarks(registry).get((group, int(version or 0)), 0)
    return max(floor, mark)


def group_watermarks(registry: Any) -> dict[tuple[str, int], int]:
    """(group, version) -> the last staging version merged for it."""
    out: dict[tuple[str, int], int] = {}
    for key, payload in registry.list_objects(WATERMARK_KIND).items():
        if key.startswith("group:"):
            name, _, version = key.removeprefix("group:").rpartition("@")
            out[(name, int(version))] = int(payload["staging_version"])
    return out


@dataclass(frozen=True)
class GroupCompaction:
    """Staged records of one group version merged into its Gold table."""

    group: str
    version: int
    records: int
    rows_merged: int
    gold_delta_version: int | None
    dead_lettered: int = 0


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

    @property
    def dead_lettered(self) -> int:
        return sum(g.dead_lettered for g in self.groups)


def compact_staging(store: FeatureStore, table: StagingTable | None = None) -> CompactionResult:
    """Merge every record staged since each group's last compaction into its Gold table.

    Records are checked against the schema they were staged under and the group's current
    one, deduplicated on entity keys + event time (the last staged wins) and merged (upsert)
    through the store's materialized store. Records that cannot be merged (they break the
    schema, or Gold refuses the batch) go to the dead-letter table with the reason. Each group
    version's watermark moves when it is done; a group whose merge fails for another reason
    (the engine, storage) keeps its watermark and is named in a MaterializationError after the
    others are merged.
    """
    started = time.perf_counter()
    staging = table or StagingTable.for_store(store.config)
    registry = store.registry
    current = staging.version()
    floor = compacted_version(registry)
    if current is None or current <= floor:
        return CompactionResult(None, current, [], time.perf_counter() - started)
    marks = group_watermarks(registry)
    by_group: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in staging.changes(floor + 1, current):
        key = (row["group"], int(row["version"]))
        if int(row["_commit_version"]) > max(floor, marks.get(key, 0)):
            by_group.setdefault(key, []).append(row)
    results: list[GroupCompaction] = []
    failures: list[str] = []
    lowest = current
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for (name, version), rows in sorted(by_group.items()):
        try:
            results.append(_merge_group(store, staging.dead_letters, name, version, rows))
        except FeatureStoreError as error:
            failures.append(f"{name}@{version}: {error}")
            lowest = min(lowest, max(floor, marks.get((name, version), 0)))
            continue
        registry.put_object(
            WATERMARK_KIND, _group_mark_key(name, version), {"staging_version": current, "at": now}
        )
    registry.put_object(WATERMARK_KIND, WATERMARK_KEY, {"staging_version": lowest, "at": now})
    if failures:
        raise MaterializationError(
            f"Compacting staged records failed for {len(failures)} group(s): "
            + "; ".join(failures),
            fix="correct the cause and run the compaction again; the other groups were merged "
            "and are not merged again, and nothing staged is lost.",
        )
    return CompactionResult(floor + 1, current, results, time.perf_counter() - started)


def _merge_group(
    store: FeatureStore,
    dead_letters: DeadLetterTable,
    name: str,
    version: int,
    rows: list[dict[str, Any]],
) -> GroupCompaction:
    import pandas as pd

    schema = store.registry.get_group(name, version)
    current = RowChecker(schema)
    staged_checkers: dict[str, RowChecker] = {}
    good: list[dict[str, Any]] = []
    typed: list[dict[str, Any]] = []
    dead = 0
    for row in rows:
        payload = json.loads(row["payload"])
        staged = _staged_checker(row.get("schema"), staged_checkers, current)
        _, errors = staged.check_one(payload)
        if errors:
            reason = "does not match the schema it was staged under: " + "; ".join(errors)
        else:
            checked, errors = current.check_one(payload)
            reason = "breaks the group's current schema: " + "; ".join(errors)
        if errors:
            dead += dead_letters.append([row], reason)
            continue
        good.append(row)
        typed.append(checked)
    if not typed:
        return GroupCompaction(name, version, len(rows), 0, None, dead)
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for item in typed:  # commit order: the last staged record of a key + time wins
        latest[(*[item[k] for k in schema.entity_keys], item[schema.timestamp_key])] = item
    frame = pd.DataFrame(list(latest.values()), columns=list(schema.columns), dtype=object)
    try:
        result = store.write_features(f"{name}@{version}", frame, mode="merge")
    except SchemaValidationError as error:  # Gold refuses the batch: it would every time
        dead += dead_letters.append(good, f"refused by the Gold table: {error}")
        return GroupCompaction(name, version, len(rows), 0, None, dead)
    return GroupCompaction(
        name, version, len(rows), result.rows_written, result.delta_version, dead
    )


def _staged_checker(
    text: str | None, cache: dict[str, RowChecker], current: RowChecker
) -> RowChecker:
    """The checker of the schema a record was staged under (the current one for records
    staged before the schema was kept)."""
    if not text:
        return current
    checker = cache.get(text)
    if checker is None:
        checker = cache[text] = RowChecker(FeatureGroupSchema.from_dict(json.loads(text)))
    return checker
