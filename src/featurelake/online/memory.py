"""An online store inside the process: a dict per group version, guarded by a lock.

For tests, notebooks and single-process serving. Each entity holds one immutable entry (event
time, ingestion time, values, expiry); a write replaces the entry atomically, so readers never
see half a row. Expiry follows the group's ttl, counted from the write like Redis' EXPIRE.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Unpack

from featurelake.online.base import (
    ABSENT,
    OnlineRecord,
    OnlineStore,
    ReadRequest,
    StoredRow,
    StoredValue,
    StoreOptions,
    WriteRequest,
)
from featurelake.schema import FeatureGroupSchema

SWEEP_EVERY = 1_024


class _Entry(NamedTuple):
    event_us: int
    ingested_us: int
    values: Mapping[str, Any]
    expires_at: float  # time.time(); 0 = never


class InMemoryOnlineStore(OnlineStore):
    """Thread-safe latest values per entity, held in this process."""

    backend = "memory"

    def __init__(self, *, name: str | None = None, **options: Unpack[StoreOptions]) -> None:
        super().__init__(**options)
        self._name = name or uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._data: dict[tuple[str, int], dict[str, _Entry]] = {}
        # (group, version) -> entity -> feature -> kept versions, newest first
        self._history: dict[tuple[str, int], dict[str, dict[str, deque[StoredValue]]]] = {}
        self._writes = 0

    @property
    def target(self) -> str:
        return f"memory://{self._name}"

    def _table(self, schema: FeatureGroupSchema) -> dict[str, _Entry]:
        return self._data.setdefault((schema.name, schema.version), {})

    def _write(self, request: WriteRequest, records: Sequence[OnlineRecord]) -> list[bool]:
        schema, ttl_ms = request.schema, request.ttl_ms
        now = time.time()
        expires_at = now + ttl_ms / 1000.0 if ttl_ms else 0.0
        accepted = []
        keep = self.history_size
        with self._lock:
            table = self._table(schema)
            history = self._history.setdefault((schema.name, schema.version), {}) if keep else None
            self._writes += 1
            if self._writes % SWEEP_EVERY == 0:
                self._sweep(now)
            for record in records:
                current = table.get(record.entity)
                if current is not None and current.expires_at and current.expires_at <= now:
                    current = None
                if (
                    current is not None
                    and not request.force
                    and (record.event_us, record.ingested_us)
                    < (current.event_us, current.ingested_us)
                ):
                    accepted.append(False)
                    continue
                values = record.values if current is None else {**current.values, **record.values}
                table[record.entity] = _Entry(
                    record.event_us, record.ingested_us, values, expires_at
                )
                if history is not None:
                    kept = history.setdefault(record.entity, {})
                    for feature, value in record.values.items():
                        versions = kept.setdefault(feature, deque(maxlen=keep))
                        number = versions[0].version + 1 if versions else 1  # type: ignore[operator]
                        versions.appendleft(StoredValue(number, record.event_us, value))
                accepted.append(True)
        return accepted

    def _sweep(self, now: float) -> None:
        """Drop expired entries (called under the lock, every `SWEEP_EVERY` writes)."""
        for table in self._data.values():
            expired = [
                e for e, entry in table.items() if entry.expires_at and entry.expires_at <= now
            ]
            for entity in expired:
                del table[entity]

    def _read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        now = time.time()
        out: list[list[StoredRow | None]] = []
        with self._lock:
            for request in requests:
                table = self._data.get((request.schema.name, request.schema.version), {})
                features = request.features
                rows: list[StoredRow | None] = []
                for entity in request.entities:
                    entry = table.get(entity)
                    if entry is None or (entry.expires_at and entry.expires_at <= now):
                        rows.append(None)
                        continue
                    values = entry.values
                    rows.append(
                        StoredRow(entry.event_us, [values.get(f, ABSENT) for f in features])
                    )
                out.append(rows)
        return out

    def _delete(self, schema: FeatureGroupSchema, entities: list[str] | None) -> int:
        with self._lock:
            if entities is None:
                self._history.pop((schema.name, schema.version), None)
                table = self._data.pop((schema.name, schema.version), {})
                return len(table)
            table = self._table(schema)
            history = self._history.get((schema.name, schema.version), {})
            for entity in entities:
                history.pop(entity, None)
            return sum(table.pop(e, None) is not None for e in entities)

    def _value_history(
        self, schema: FeatureGroupSchema, entity: str, feature: str, limit: int
    ) -> list[StoredValue]:
        now = time.time()
        with self._lock:
            entry = self._table(schema).get(entity)
            if entry is None or feature not in entry.values:
                return []
            if entry.expires_at and entry.expires_at <= now:
                return []
            kept = self._history.get((schema.name, schema.version), {}).get(entity, {})
            versions = kept.get(feature)
            if not versions:
                return [StoredValue(None, entry.event_us, entry.values[feature])]
            return list(versions)[:limit]

    def _delete_value(self, schema: FeatureGroupSchema, entity: str, feature: str) -> bool:
        with self._lock:
            table = self._table(schema)
            self._history.get((schema.name, schema.version), {}).get(entity, {}).pop(feature, None)
            entry = table.get(entity)
            if entry is None or feature not in entry.values:
                return False
            values = {k: v for k, v in entry.values.items() if k != feature}
            if values:
                table[entity] = entry._replace(values=values)
            else:
                del table[entity]
            return True

    def _health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "groups": len(self._data),
                "entities": sum(len(t) for t in self._data.values()),
            }

    def _close(self) -> None:
        with self._lock:
            self._data.clear()
            self._history.clear()
