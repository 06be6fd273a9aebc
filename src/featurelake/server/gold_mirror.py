"""An in-process online store kept filled from the Gold tables, for `online_backend: memory`.

A memory online store lives in the server's process, so nothing outside it (`sync-online`, a
`materialize` in another process) can fill it. `GoldMirror` does it inside the server: on
start, the latest value per entity of every registered group version that has data is read
from its Gold table (delta-rs, no Spark) and pushed into the store with the online sync's own
row choice and conversions (`online.sync.push_latest_arrow`). Afterwards, at most every
`online_refresh_seconds`, a serve request checks each Gold table's Delta version; a group whose
table moved on (a write by another process, the compaction of staged writes) gets the table's
change feed since the loaded version: new rows are pushed (older ones never replace newer),
and entities whose rows were removed (overwrite, backfill, delete) take what the table holds
now, or leave the store when nothing is left. Writes through the server reach the store
directly. A group that cannot be loaded makes its serve requests fail with the reason, never
answer silent nulls.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.errors import FeatureStoreError, OnlineStoreError, first_line
from featurelake.online.sync import push_latest_arrow, without_views
from featurelake.schema import INGESTED_AT, FeatureGroupSchema
from featurelake.server.access import scrub

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from featurelake.serving import FeatureStore

_UPSERTS = ("insert", "update_postimage")


@dataclass(frozen=True)
class GroupLoad:
    """What one refresh did for one group version. `mode`: `full`, `incremental` or
    `failed` (then `error` says why)."""

    group: str
    version: int
    delta_version: int | None
    mode: str
    rows_written: int = 0
    rows_rejected: int = 0
    rows_deleted: int = 0
    error: str | None = None


class GoldMirror:
    """Loads and refreshes the server's memory online store from the Gold tables."""

    def __init__(self, store: FeatureStore, refresh_seconds: float) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, int], tuple[str, DeltaTable]] = {}
        self._loaded: dict[tuple[str, int], int] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._checked_at: float | None = None

    @staticmethod
    def needed(store: FeatureStore) -> bool:
        """True when the store serves from an in-process memory store (nothing else fills it)."""
        return bool(store.config.enable_online_store) and store.online.backend == "memory"

    # -- refreshing ---------------------------------------------------------------------------

    def refresh_if_due(self) -> None:
        """Refresh when the last check is `refresh_seconds` old (the first call always loads).

        While another request refreshes, this one serves the values as they are.
        """
        due = self._checked_at is None or (
            time.monotonic() - self._checked_at >= self.refresh_seconds
        )
        if not due:
            return
        if self._checked_at is None:
            with self._lock:  # the first load: every request waits for it
                if self._checked_at is None:
                    self._refresh_locked()
            return
        if self._lock.acquire(blocking=False):
            try:
                self._refresh_locked()
            finally:
                self._lock.release()

    def refresh(self) -> list[GroupLoad]:
        """Check every registered group version now; load what changed. Returns what was done."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> list[GroupLoad]:
        done: list[GroupLoad] = []
        try:
            schemas = self.store.registry.list_groups(all_versions=True)
        except FeatureStoreError as error:
            logger.warning("the in-process online store was not refreshed: {}", error)
            return done
        for schema in schemas:
            key = (schema.name, schema.version)
            try:
                result = self._refresh_group(schema)
            except Exception as error:
                reason = (
                    error.message if isinstance(error, FeatureStoreError) else first_line(error)
                )
                if self._failed.get(key) != reason:
                    logger.warning(
                        "loading {}@{} into the in-process online store failed: {}",
                        schema.name,
                        schema.version,
                        reason,
                    )
                self._failed[key] = reason
                self._tables.pop(key, None)
                done.append(GroupLoad(schema.name, schema.version, None, "failed", error=reason))
                continue
            self._failed.pop(key, None)
            if result is not None:
                done.append(result)
        self._checked_at = time.monotonic()
        return done

    def _refresh_group(self, schema: FeatureGroupSchema) -> GroupLoad | None:
        key = (schema.name, schema.version)
        opened = self._tables.get(key)
        if opened is None:
            opened = self._open(schema)
            if opened is None:
                return None  # no data yet: nothing to serve, nothing to load
            self._tables[key] = opened
        else:
            opened[1].update_incremental()
        path, table = opened
        current = int(table.version())
        loaded = self._loaded.get(key)
        if loaded == current:
            return None
        changes = None if loaded is None else self._changes(schema, table, loaded, current)
        if changes is None:
            result = self._full(schema, path, current)
        else:
            result = self._incremental(schema, path, changes, current)
        self._loaded[key] = current
        logger.info(
            "in-process online store: {}@{} {} to Delta version {} ({} written, {} deleted)",
            schema.name,
            schema.version,
            result.mode,
            current,
            result.rows_written,
            result.rows_deleted,
        )
        return result

    # -- reading Gold ---------------------------------------------------------------------------

    def _open(self, schema: FeatureGroupSchema) -> tuple[str, DeltaTable] | None:
        from featurelake.gold.delta_reader import check_readable
        from featurelake.storage import is_delta_table, open_table

        location = self.store.registry.gold_location(schema.name, schema.version)
        path = location.path
        if location.table_name or not path:
            raise OnlineStoreError(
                f"The Gold table of '{schema.name}' v{schema.version} ({location}) is a "
                "catalog table, which the in-process online store cannot load (it reads Delta "
                "paths with delta-rs).",
                fix="use online_backend: redis and fill it with featurelake sync-online.",
                group=schema.name,
            )
        if not is_delta_table(path):
            return None
        table = open_table(path)
        check_readable(path, table)
        return path, table

    def _full(self, schema: FeatureGroupSchema, path: str, current: int) -> GroupLoad:
        from featurelake.gold.delta_reader import open_snapshot, read_arrow

        snapshot = open_snapshot(path, version=current)
        rows = read_arrow(snapshot, _columns(schema, snapshot.columns))
        written, rejected = push_latest_arrow(self.store.online, schema, rows)
        return GroupLoad(schema.name, schema.version, current, "full", written, rejected)

    def _changes(
        self, schema: FeatureGroupSchema, table: DeltaTable, loaded: int, current: int
    ) -> pa.Table | None:
        """The change feed after `loaded` up to `current`, or None when it cannot be read
        (vacuumed, or enabled later): then the group is loaded whole again."""
        import pyarrow as pa

        try:
            reader = table.load_cdf(starting_version=loaded + 1, ending_version=current)
            return without_views(pa.table(reader))
        except Exception as error:
            logger.warning(
                "the change feed of {}@{} from version {} is not readable ({}); "
                "reloading the group",
                schema.name,
                schema.version,
                loaded + 1,
                first_line(error),
            )
            return None

    def _incremental(
        self, schema: FeatureGroupSchema, path: str, changes: pa.Table, current: int
    ) -> GroupLoad:
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = changes.column("_change_type").cast(pa.string())
        upserts = changes.filter(pc.is_in(kind, pa.array(_UPSERTS)))
        written, rejected = push_latest_arrow(self.store.online, schema, upserts)
        removed = changes.filter(pc.equal(kind, "delete"))
        deleted = 0
        if removed.num_rows:
            # Rows were removed (overwrite, backfill, delete): what the table holds now for
            # those entities wins, even when older than what the store has.
            more, gone = self._replace(schema, path, current, removed)
            written += more
            deleted = gone
        return GroupLoad(
            schema.name, schema.version, current, "incremental", written, rejected, deleted
        )

    def _replace(
        self, schema: FeatureGroupSchema, path: str, current: int, removed: pa.Table
    ) -> tuple[int, int]:
        from featurelake.gold.delta_reader import ScanFilter, open_snapshot, read_arrow

        keys = list(schema.entity_keys)
        entities = removed.select(keys).group_by(keys).aggregate([])
        snapshot = open_snapshot(path, version=current)
        scan = ScanFilter(values={k: entities.column(k).unique().to_pylist() for k in keys})
        rows = without_views(read_arrow(snapshot, _columns(schema, snapshot.columns), scan))
        rows = rows.join(entities, keys, join_type="left semi")
        written, _ = push_latest_arrow(self.store.online, schema, rows, force=True)
        gone = entities.join(rows.select(keys), keys, join_type="left anti")
        values = [c.to_pylist() for c in gone.columns]
        ids: list[Any] = list(zip(*values, strict=True)) if len(keys) > 1 else values[0]
        deleted = self.store.online.delete(schema, ids) if ids else 0
        return written, deleted

    # -- what requests see ----------------------------------------------------------------------

    def check_loaded(self, schemas: list[FeatureGroupSchema]) -> None:
        """Raise OnlineStoreError for a group whose Gold table could not be loaded."""
        for schema in schemas:
            reason = self._failed.get((schema.name, schema.version))
            if reason is not None:
                raise OnlineStoreError(
                    f"The in-process online store could not load '{schema.name}' "
                    f"v{schema.version} from its Gold table: {reason}",
                    fix="fix the cause above (the server retries on the next requests), or use "
                    "online_backend: redis and featurelake sync-online.",
                    group=schema.name,
                )

    def status(self) -> dict[str, Any]:
        """For /v1/health: the Delta version loaded per group version, and failures."""
        config = self.store.config
        return {
            "healthy": not self._failed,
            "refresh_seconds": self.refresh_seconds,
            "loaded": {f"{n}@{v}": d for (n, v), d in sorted(self._loaded.items())},
            "failed": {  # health is public: no storage path in it
                f"{n}@{v}": scrub(r, config) for (n, v), r in sorted(self._failed.items())
            },
        }


def _columns(schema: FeatureGroupSchema, present: list[str]) -> list[str]:
    wanted = [*schema.entity_keys, schema.timestamp_key, *schema.feature_names, INGESTED_AT]
    return [c for c in wanted if c in present]
