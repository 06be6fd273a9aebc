"""Two small Delta tables that hold every piece of registry metadata (Spark engine).

`objects` holds current state, one row per (kind, key), upserted with MERGE: group definitions,
virtual definitions, services, sync watermarks. `events` is append-only history: writes,
lineage, router metrics, statistics, scheduler runs. Payloads are JSON text. All operations are
Spark SQL / DataFrame calls (no DeltaTable Python API), so they also run over Spark Connect.
The delta-rs engine in `deltars_kv` keeps the same tables without Spark.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from featurelake.registry.locations import TableLocation
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

OBJECT_COLUMNS = "kind STRING NOT NULL, key STRING NOT NULL, payload STRING, updated_at TIMESTAMP"
EVENT_COLUMNS = "kind STRING NOT NULL, key STRING NOT NULL, payload STRING, recorded_at TIMESTAMP"


def event_payload(payload: str, recorded_at: Any, key: str) -> dict[str, Any]:
    """A stored event as `read_events` gives it: its payload with `recorded_at` and `key`."""
    event: dict[str, Any] = json.loads(payload)
    event.setdefault("recorded_at", recorded_at)
    event.setdefault("key", key)
    return event


def to_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, default=str)


CREATE_ATTEMPTS = 8


class SparkKeyValueTables:
    """The `objects` and `events` tables of one registry, through a Spark session."""

    def __init__(self, spark: SparkSession, objects: TableLocation, events: TableLocation) -> None:
        self.spark = spark
        self.objects = objects
        self.events = events

    def ensure_tables(self) -> None:
        """Create both tables when missing (safe to call from several processes)."""
        for location, columns in ((self.objects, OBJECT_COLUMNS), (self.events, EVENT_COLUMNS)):
            statement = f"CREATE TABLE IF NOT EXISTS {location.sql_name} ({columns}) USING DELTA"
            for attempt in range(1, CREATE_ATTEMPTS + 1):
                try:
                    self.spark.sql(statement)
                    break
                except Exception as error:
                    # Another writer is creating it: its files are there, its first commit
                    # not yet. Once that commit lands, IF NOT EXISTS sees the table.
                    if attempt == CREATE_ATTEMPTS or "not a Delta table" not in str(error):
                        raise
                    time.sleep(0.05 * attempt)

    def read_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows = self.spark.read.format("delta").load(self.objects.path).collect()
        return {(r["kind"], r["key"]): json.loads(r["payload"]) for r in rows}

    def read_events(self, kind: str, key: str | None = None) -> list[dict[str, Any]]:
        """Events of one kind (and key), oldest first; each payload gets `recorded_at`."""
        from pyspark.sql import functions as F

        frame = self.spark.read.format("delta").load(self.events.path).where(F.col("kind") == kind)
        if key is not None:
            frame = frame.where(F.col("key") == key)
        rows = frame.orderBy("recorded_at").collect()
        return [event_payload(row["payload"], row["recorded_at"], row["key"]) for row in rows]

    def upsert_object(
        self, kind: str, key: str, payload: Mapping[str, Any], *, only_if_absent: bool = False
    ) -> bool:
        """MERGE one object in; with `only_if_absent`, insert only when missing.

        Returns True when a row was inserted or updated. Concurrent writers conflict in Delta's
        optimistic concurrency and one of them fails with a conflict (retried by the caller),
        so `only_if_absent` decides races: exactly one inserter wins.
        """
        source = self.spark.createDataFrame(
            [(kind, key, to_json(payload), utc_now())], OBJECT_COLUMNS.replace(" NOT NULL", "")
        )
        view = f"_fl_src_{uuid.uuid4().hex}"
        source.createOrReplaceTempView(view)
        try:
            clause = "" if only_if_absent else "WHEN MATCHED THEN UPDATE SET * "
            result = self.spark.sql(
                f"MERGE INTO {self.objects.sql_name} t USING {view} s "
                "ON t.kind = s.kind AND t.key = s.key "
                f"{clause}WHEN NOT MATCHED THEN INSERT *"
            ).collect()
        finally:
            self.spark.catalog.dropTempView(view)
        return bool(result and result[0]["num_affected_rows"] > 0)

    def delete_object(self, kind: str, key: str) -> None:
        source = self.spark.createDataFrame([(kind, key)], "kind STRING, key STRING")
        view = f"_fl_del_{uuid.uuid4().hex}"
        source.createOrReplaceTempView(view)
        try:
            self.spark.sql(
                f"MERGE INTO {self.objects.sql_name} t USING {view} s "
                "ON t.kind = s.kind AND t.key = s.key WHEN MATCHED THEN DELETE"
            ).collect()
        finally:
            self.spark.catalog.dropTempView(view)

    def append_events(self, rows: list[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Blind appends: they never conflict with each other."""
        if not rows:
            return
        now = utc_now()
        frame = self.spark.createDataFrame(
            [(kind, key, to_json(payload), now) for kind, key, payload in rows],
            EVENT_COLUMNS.replace(" NOT NULL", ""),
        )
        frame.write.format("delta").mode("append").save(self.events.path)
