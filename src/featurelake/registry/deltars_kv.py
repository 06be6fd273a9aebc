"""The registry's `objects` and `events` Delta tables through delta-rs: no Spark, no JVM.

Times are stored as Delta `timestamp` (UTC-adjusted), the type Spark's TIMESTAMP columns have,
so tables created by either engine accept the other's writes.

Same tables and layout as `delta_kv.SparkKeyValueTables` (either engine reads what the other
wrote); a registry read costs milliseconds instead of a Spark job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import pyarrow as pa

from featurelake import storage
from featurelake.errors import ConcurrentWriteError
from featurelake.registry.delta_kv import event_payload, to_json
from featurelake.registry.locations import TableLocation
from featurelake.times import utc_now

OBJECT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("payload", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("payload", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)
MATCH = "t.kind = s.kind AND t.key = s.key"


def _uri(location: TableLocation) -> str:
    assert location.path is not None, "registry tables are addressed by path"
    return location.path


# Commits on S3 are conditional puts of the next log file (see featurelake.storage): of two
# processes committing the same version one wins and the other gets a conflict, which the
# registry's retry answers by merging again on the new version. Nothing is overwritten.


class DeltaRsKeyValueTables:
    """The `objects` and `events` tables of one registry, through delta-rs."""

    def __init__(self, objects: TableLocation, events: TableLocation) -> None:
        self.objects = _uri(objects)
        self.events = _uri(events)

    def ensure_tables(self) -> None:
        for uri, schema in ((self.objects, OBJECT_SCHEMA), (self.events, EVENT_SCHEMA)):
            if storage.is_delta_table(uri):
                continue
            try:
                storage.create_table(uri, schema, mode="ignore")
            except Exception as error:
                if storage.is_delta_table(uri):
                    continue
                # Another process is creating the same table: its folder exists, its first
                # commit not yet. Transient: the caller's retry finds the table.
                raise ConcurrentWriteError(
                    f"The registry table {uri} is being created by another writer.",
                    fix="retry; this resolves itself once the other writer commits.",
                ) from error

    def _table(self, uri: str) -> Any:
        return storage.open_table(uri)

    def read_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        table = pa.table(
            self._table(self.objects).to_pyarrow_table(columns=["kind", "key", "payload"])
        )
        return {
            (kind, key): json.loads(payload)
            for kind, key, payload in zip(
                table["kind"].to_pylist(),
                table["key"].to_pylist(),
                table["payload"].to_pylist(),
                strict=True,
            )
        }

    def read_events(self, kind: str, key: str | None = None) -> list[dict[str, Any]]:
        """Events of one kind (and key), oldest first; each payload gets `recorded_at`."""
        filters: list[tuple[str, str, Any]] = [("kind", "=", kind)]
        if key is not None:
            filters.append(("key", "=", key))
        table = pa.table(self._table(self.events).to_pyarrow_table(filters=filters))
        rows = sorted(table.to_pylist(), key=lambda r: r["recorded_at"])
        out = []
        for row in rows:
            recorded = row["recorded_at"]
            if recorded is not None and recorded.tzinfo is not None:
                # Same as a Spark read with the UTC session time zone: naive UTC.
                recorded = recorded.astimezone(UTC).replace(tzinfo=None)
            out.append(event_payload(row["payload"], recorded, row["key"]))
        return out

    def upsert_object(
        self, kind: str, key: str, payload: Mapping[str, Any], *, only_if_absent: bool = False
    ) -> bool:
        """MERGE one object in; with `only_if_absent`, insert only when missing."""
        source = pa.Table.from_pylist(
            [{"kind": kind, "key": key, "payload": to_json(payload), "updated_at": utc_now()}],
            schema=OBJECT_SCHEMA,
        )

        def merge(properties: Any) -> dict[str, Any]:
            merger = self._table(self.objects).merge(
                source,
                predicate=MATCH,
                source_alias="s",
                target_alias="t",
                commit_properties=properties,
            )
            if not only_if_absent:
                merger = merger.when_matched_update_all()
            return dict(merger.when_not_matched_insert_all().execute())

        metrics, _ = storage.commit_verified(self.objects, merge, always=False)
        changed = metrics.get("num_target_rows_inserted", 0) + metrics.get(
            "num_target_rows_updated", 0
        )
        return bool(changed)

    def delete_object(self, kind: str, key: str) -> None:
        source = pa.Table.from_pylist([{"kind": kind, "key": key}])

        def delete(properties: Any) -> Any:
            return (
                self._table(self.objects)
                .merge(
                    source,
                    predicate=MATCH,
                    source_alias="s",
                    target_alias="t",
                    commit_properties=properties,
                )
                .when_matched_delete()
                .execute()
            )

        storage.commit_verified(self.objects, delete, always=False)

    def append_events(self, rows: list[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Blind appends: they never conflict with each other."""
        if not rows:
            return
        now = utc_now()
        table = pa.Table.from_pylist(
            [
                {"kind": kind, "key": key, "payload": to_json(payload), "recorded_at": now}
                for kind, key, payload in rows
            ],
            schema=EVENT_SCHEMA,
        )
        storage.commit_verified(
            self.events,
            lambda properties: storage.write_table(
                self.events, table, mode="append", commit_properties=properties
            ),
            always=False,
        )
