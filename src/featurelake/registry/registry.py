"""The metadata registry: groups, versions, lineage and write history, kept in Delta.

Everything lives under `{storage_path}/_registry`, so a new process pointed at the same store
sees every group. Reads of current state go through a TTL cache
(`metadata_cache_ttl_seconds`); writes invalidate it; Delta conflicts are retried with backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureGroupNotFoundError, RegistryError
from featurelake.registry.delta_kv import SparkKeyValueTables
from featurelake.registry.deltars_kv import DeltaRsKeyValueTables
from featurelake.registry.locations import TableLocation, gold_location, registry_location
from featurelake.retry import with_config_retries
from featurelake.schema import FeatureGroupSchema, SchemaChange, classify_change
from featurelake.schema.composites import check_composite_sources
from featurelake.storage import is_object_store
from featurelake.times import utc_now

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")

GROUP = "group"
WRITE = "write"
LINEAGE = "lineage"


def group_key(name: str, version: int) -> str:
    return f"{name}@{version}"


@dataclass(frozen=True)
class RegistrationResult:
    """What `register_group` did: `created`, `unchanged` or `updated` (compatible change)."""

    group: str
    version: int
    action: str


@dataclass(frozen=True)
class Lineage:
    """Where a group's data came from."""

    sources: tuple[str, ...] = ()
    job: str | None = None
    upstream_groups: tuple[str, ...] = ()
    query: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "job": self.job,
            "upstream_groups": list(self.upstream_groups),
            "query": self.query,
        }


@dataclass(frozen=True)
class GroupState:
    """What the registry knows about a group version's Gold table."""

    group: str
    version: int
    last_updated: datetime | None
    delta_version: int | None
    row_count: int | None
    writes: int
    last_mode: str | None
    lineage: list[dict[str, Any]] = field(default_factory=list)


class Registry:
    """Feature metadata of one store. Thread-safe; one instance per store is enough."""

    def __init__(self, config: FeatureStoreConfig, spark: SparkSession | None = None) -> None:
        self.config = config
        self._spark = spark
        self._tables: SparkKeyValueTables | DeltaRsKeyValueTables | None = None
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._loaded_at: float | None = None
        # Parsed group schemas by group key, with the payload they were parsed from: a schema
        # is parsed once per registry read, not on every lookup (schemas are immutable).
        self._schemas: dict[str, tuple[Any, FeatureGroupSchema]] = {}

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from featurelake.session import get_spark

            self._spark = get_spark(self.config)
        return self._spark

    @property
    def started_spark(self) -> SparkSession | None:
        """The session given or started so far (None: no Spark yet)."""
        return self._spark

    @property
    def engine(self) -> str:
        """`delta-rs` (no Spark needed) or `spark`, from `registry_engine` in the config."""
        return registry_engine(self.config)

    @property
    def tables(self) -> SparkKeyValueTables | DeltaRsKeyValueTables:
        with self._lock:
            if self._tables is None:
                objects = registry_location(self.config, "objects")
                events = registry_location(self.config, "events")
                tables: SparkKeyValueTables | DeltaRsKeyValueTables
                if self.engine == "delta-rs":
                    tables = DeltaRsKeyValueTables(objects, events)
                else:
                    tables = SparkKeyValueTables(self.spark, objects, events)
                self._retry("creating the registry tables", tables.ensure_tables)
                self._tables = tables
            return self._tables

    def _retry(self, what: str, operation: Callable[[], T]) -> T:
        try:
            return with_config_retries(operation, what=what, config=self.config)
        except RegistryError:
            raise
        except Exception as error:
            if hasattr(error, "transient") or type(error).__module__.startswith("featurelake"):
                raise
            raise RegistryError(
                f"The registry under {self.config.storage_path}/_registry failed while {what}: "
                f"{str(error).splitlines()[0] if str(error) else type(error).__name__}",
                fix="check that storage_path is reachable and writable; the error above is "
                "the cause.",
            ) from error

    def _current_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            ttl = self.config.metadata_cache_ttl_seconds
            stale = self._loaded_at is None or time.monotonic() - self._loaded_at > ttl
            if stale:
                self._objects = self._retry("reading registry objects", self.tables.read_objects)
                self._loaded_at = time.monotonic()
            return self._objects

    def invalidate(self) -> None:
        """Drop the cache; the next read goes to the Delta tables."""
        with self._lock:
            self._loaded_at = None

    # -- generic objects and events (used by every layer above) ---------------------------------

    def get_object(self, kind: str, key: str) -> dict[str, Any] | None:
        """The current payload of an object, or None."""
        found = self._current_objects().get((kind, key))
        return dict(found) if found is not None else None

    def list_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every object of a kind, by key."""
        return {k: dict(v) for (kd, k), v in self._current_objects().items() if kd == kind}

    def put_object(self, kind: str, key: str, payload: Mapping[str, Any]) -> None:
        """Create or replace an object."""
        with self._lock:
            self._retry(
                f"saving {kind} '{key}'", lambda: self.tables.upsert_object(kind, key, payload)
            )
            self.invalidate()

    def put_object_if_absent(self, kind: str, key: str, payload: Mapping[str, Any]) -> bool:
        """Insert an object only if no process has; True for the one caller that inserted it."""
        with self._lock:

            def attempt() -> bool:
                return self.tables.upsert_object(kind, key, payload, only_if_absent=True)

            inserted = self._retry(f"claiming {kind} '{key}'", attempt)
            self.invalidate()
            return inserted

    def delete_object(self, kind: str, key: str) -> None:
        with self._lock:
            self._retry(f"deleting {kind} '{key}'", lambda: self.tables.delete_object(kind, key))
            self.invalidate()

    def append_event(self, kind: str, key: str, payload: Mapping[str, Any]) -> None:
        """Record one history event (appends never conflict)."""
        self._retry(
            f"recording {kind} for '{key}'",
            lambda: self.tables.append_events([(kind, key, payload)]),
        )

    def append_events(self, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Record history events `(kind, key, payload)` in one commit."""
        if events:
            self._retry(
                f"recording {len(events)} events", lambda: self.tables.append_events(list(events))
            )

    def events(self, kind: str, key: str | None = None) -> list[dict[str, Any]]:
        """History events of a kind (optionally of one key), oldest first."""
        return self._retry(f"reading {kind} events", lambda: self.tables.read_events(kind, key))

    # -- feature groups ------------------------------------------------------------------------

    def register_group(self, schema: FeatureGroupSchema) -> RegistrationResult:
        """Register a group version: new, same (no-op), or a compatible change in place.

        An incompatible change to a registered version raises SchemaValidationError explaining
        the version bump.
        """
        check_composite_sources(schema, self.get_group)  # cross-group inputs must exist
        with self._lock:
            self.invalidate()
            key = group_key(schema.name, schema.version)
            existing = self.get_object(GROUP, key)
            if existing is None:
                self.put_object(GROUP, key, _group_payload(schema))
                return RegistrationResult(schema.name, schema.version, "created")
            old = FeatureGroupSchema.from_dict(existing["schema"])
            if classify_change(old, schema) is SchemaChange.UNCHANGED:
                return RegistrationResult(schema.name, schema.version, "unchanged")
            self.put_object(
                GROUP, key, _group_payload(schema, created_at=existing.get("created_at"))
            )
            return RegistrationResult(schema.name, schema.version, "updated")

    def plan_registration(self, schema: FeatureGroupSchema) -> str:
        """What `register_group` would do (`created`/`unchanged`/`updated`), without doing it.

        Raises the same SchemaValidationError as `register_group` for an incompatible change.
        """
        existing = self.get_object(GROUP, group_key(schema.name, schema.version))
        if existing is None:
            return "created"
        old = FeatureGroupSchema.from_dict(existing["schema"])
        return "unchanged" if classify_change(old, schema) is SchemaChange.UNCHANGED else "updated"

    def versions(self, name: str) -> list[int]:
        """Registered versions of a group, ascending."""
        return sorted(
            int(payload["version"])
            for payload in self.list_objects(GROUP).values()
            if payload["name"] == name
        )

    def get_group(self, name: str, version: int | None = None) -> FeatureGroupSchema:
        """A registered group (its latest version unless `version` is given)."""
        versions = self.versions(name)
        if not versions or (version is not None and version not in versions):
            known = sorted({p["name"] for p in self.list_objects(GROUP).values()})
            wanted = f"'{name}'" + (f" v{version}" if version is not None else "")
            if versions:
                fix = f"use one of its versions: {', '.join(map(str, versions))}."
            elif known:
                fix = f"register it first, or use one of: {', '.join(known)}."
            else:
                fix = "register it first (store.register_features(schema) or featurelake apply)."
            raise FeatureGroupNotFoundError(
                f"Feature group {wanted} is not registered in {self.config.storage_path}.",
                fix=fix,
                group=name,
            )
        chosen = version if version is not None else versions[-1]
        key = group_key(name, chosen)
        payload = self.get_object(GROUP, key)
        assert payload is not None
        return self._parsed_schema(key, payload)

    def list_groups(self, *, all_versions: bool = False) -> list[FeatureGroupSchema]:
        """Registered groups (latest version of each, or every version), sorted by name."""
        schemas = [self._parsed_schema(k, p) for k, p in self.list_objects(GROUP).items()]
        schemas.sort(key=lambda s: (s.name, s.version))
        if all_versions:
            return schemas
        latest: dict[str, FeatureGroupSchema] = {}
        for schema in schemas:
            latest[schema.name] = schema
        return list(latest.values())

    def _parsed_schema(self, key: str, payload: Mapping[str, Any]) -> FeatureGroupSchema:
        raw = payload["schema"]
        parsed = self._schemas.get(key)
        if parsed is not None and parsed[0] is raw:
            return parsed[1]
        schema = FeatureGroupSchema.from_dict(raw)
        self._schemas[key] = (raw, schema)
        return schema

    def gold_location(self, name: str, version: int) -> TableLocation:
        """Where the Gold table of a group version lives."""
        return gold_location(self.config, name, version)

    # -- writes, state, lineage ----------------------------------------------------------------

    def record_write(
        self,
        schema: FeatureGroupSchema,
        *,
        mode: str,
        rows_written: int,
        delta_version: int,
        row_count: int | None,
        duration_seconds: float,
        lineage: Lineage | None = None,
    ) -> None:
        """Record a successful write (and its lineage) in one append."""
        key = group_key(schema.name, schema.version)
        events: list[tuple[str, str, Mapping[str, Any]]] = [
            (
                WRITE,
                key,
                {
                    "mode": mode,
                    "rows_written": rows_written,
                    "delta_version": delta_version,
                    "row_count": row_count,
                    "duration_seconds": round(duration_seconds, 3),
                    "at": utc_now().isoformat(),
                },
            )
        ]
        if lineage is not None:
            events.append((LINEAGE, key, {**lineage.to_dict(), "delta_version": delta_version}))
        self._retry(f"recording a write of {key}", lambda: self.tables.append_events(events))

    def group_state(self, name: str, version: int | None = None) -> GroupState:
        """Last update, Delta version, row count and lineage of a group version."""
        schema = self.get_group(name, version)
        key = group_key(schema.name, schema.version)
        writes = self.events(WRITE, key)
        last = writes[-1] if writes else {}
        return GroupState(
            group=schema.name,
            version=schema.version,
            last_updated=last.get("recorded_at"),
            delta_version=last.get("delta_version"),
            row_count=last.get("row_count"),
            writes=len(writes),
            last_mode=last.get("mode"),
            lineage=self.events(LINEAGE, key),
        )


LOCAL_SCHEMES = ("file:",)


def registry_engine(config: FeatureStoreConfig) -> str:
    """The engine the registry uses: delta-rs for local and `s3://` stores when installed, else
    Spark.

    `registry_engine: spark` or `delta-rs` in the config forces one.
    """
    if config.registry_engine != "auto":
        return config.registry_engine
    path = config.storage_path
    local = ("://" not in path and not path.startswith("dbfs:")) or path.startswith(LOCAL_SCHEMES)
    if not local and not is_object_store(path):
        return "spark"
    try:
        import deltalake  # noqa: F401
    except ImportError:
        return "spark"
    return "delta-rs"


def _group_payload(schema: FeatureGroupSchema, created_at: str | None = None) -> dict[str, Any]:
    now = utc_now().isoformat()
    return {
        "name": schema.name,
        "version": schema.version,
        "fingerprint": schema.fingerprint(),
        "schema": schema.to_dict(),
        "created_at": created_at or now,
        "updated_at": now,
    }
