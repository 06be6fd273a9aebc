"""The online store interface. The base class does the common part once.

`OnlineStore` resolves feature references into a read plan (cached), turns entity ids into
keys, checks written rows, applies defaults, builds `FeatureVector`s, times every call and
turns engine failures into `OnlineStoreError` / `OnlineStoreUnavailableError` naming the store.
A backend only implements `_write`, `_read`, `_delete`, `_health` and `_close`.

Writes are compare-and-set on event time: a row older than what the store holds for the entity
is rejected, so replays and backfills never overwrite newer values. Ties on event time go to
the later ingestion time. Features absent from a written row keep their stored value.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol, TypedDict

from loguru import logger

from featurelake.errors import (
    FeatureGroupNotFoundError,
    FeatureStoreError,
    OnlineStoreError,
    OnlineStoreUnavailableError,
    SchemaValidationError,
)
from featurelake.online.values import (
    ColumnBatch,
    entity_dict,
    entity_id,
    entity_list,
    from_micros,
    now_micros,
    to_micros,
)
from featurelake.online.vector import FeatureValue, FeatureVector
from featurelake.schema import INGESTED_AT, DataType, FeatureGroupSchema, parse_refs
from featurelake.schema.composites import ExpandedRequest, expand_composites
from featurelake.schema.refs import two_versions_error
from featurelake.times import utc_now

SchemaResolver = Callable[[str, int | None], FeatureGroupSchema]
MAX_REPORTED = 20
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""What a backend read returns for a feature the entity has no value of (not even a null)."""


class StoredValue(NamedTuple):
    """One version of a feature value as a backend holds it (version None: not counted)."""

    version: int | None
    event_us: int
    value: Any


class OnlineRecord(NamedTuple):
    """One row for the online store: entity id, event and ingestion time (epoch us), values."""

    entity: str
    event_us: int
    ingested_us: int
    values: dict[str, Any]


class RemoteStore(Protocol):
    """Settings that open the same store in another process (a Spark executor's Python
    worker); picklable and hashable."""

    def open(self) -> OnlineStore:
        """A store writing where the original writes."""
        ...


class StoredRow(NamedTuple):
    """What a backend read returns for one entity: event time and the requested values."""

    event_us: int
    values: list[Any]


@dataclass(frozen=True)
class ReadRequest:
    """Features of one group for some entities (ids as made by `entity_id`)."""

    schema: FeatureGroupSchema
    features: tuple[str, ...]
    entities: list[str]


@dataclass(frozen=True)
class WriteRequest:
    """Rows of one group to compare-and-set: the group, how long values live (ms, 0 = no ttl)
    and whether to write regardless of event time; what every write path hands a backend."""

    schema: FeatureGroupSchema
    ttl_ms: int
    force: bool

    @classmethod
    def of(cls, schema: FeatureGroupSchema, force: bool) -> WriteRequest:
        """The request for `schema`, its ttl from the group's `ttl`."""
        ttl_ms = int(schema.ttl.total_seconds() * 1000) if schema.ttl is not None else 0
        return cls(schema, ttl_ms, force)


@dataclass(frozen=True)
class OnlineWriteResult:
    """What a write did: rows `written`, `rejected` (older than stored), `skipped` (no entity
    id, a bad value); `offline_rows` written to Gold too by an ingest that also writes offline."""

    group: str
    version: int
    received: int
    written: int
    rejected: int
    skipped: int
    skipped_reasons: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    offline_rows: int = 0

    def __int__(self) -> int:
        """The number of rows written."""
        return self.written


@dataclass(frozen=True)
class GroupPlan:
    """The features read from one group version and their positions in the output."""

    schema: FeatureGroupSchema
    features: tuple[str, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class OnlinePlan:
    """How a list of feature references is read: groups, output names, name -> position.

    Output names are the feature names, or `group__feature` where two groups share a name;
    `index` also maps `group.feature` and `group@version.feature` to the position.
    """

    groups: tuple[GroupPlan, ...]
    names: tuple[str, ...]
    index: dict[str, int]
    expires: float
    composites: ExpandedRequest | None = None
    """Set when the request has composite features: computed from the stored features."""
    empty_values: dict[int, Any] = field(default_factory=dict)
    """Values of features an entity without any stored row has: 0 for the counts of an
    aggregation group (an entity without events counts 0, as in training sets)."""


class StoreOptions(TypedDict, total=False):
    """What every online store takes besides its own settings (`OnlineStore.__init__`): a
    backend's `__init__` passes `**options` on."""

    resolver: SchemaResolver | None
    defaults: Mapping[str, Any] | None
    plan_cache_seconds: float
    history_size: int


class OnlineStore(ABC):
    """Latest feature values per entity, for low-latency reads.

    `resolver(name, version)` returns registered schemas (a `Registry.get_group`); without one
    the store knows the groups it was given in `register_schema` / `write_batch`.
    """

    backend: ClassVar[str] = "online"

    def __init__(
        self,
        *,
        resolver: SchemaResolver | None = None,
        defaults: Mapping[str, Any] | None = None,
        plan_cache_seconds: float = 30.0,
        history_size: int = 0,
    ) -> None:
        if history_size < 0:
            raise SchemaValidationError(
                f"The online history size is {history_size}.",
                fix="set online_history_size to 0 (no history) or more.",
            )
        self.history_size = history_size
        """How many versions of each feature value per entity are kept (0: only the latest,
        without version numbers)."""
        self._resolver = resolver
        self._defaults = dict(defaults or {})
        self._plan_cache_seconds = plan_cache_seconds
        self._plans: dict[tuple[str, ...], OnlinePlan] = {}
        self._refreshing: set[tuple[str, ...]] = set()
        self._schemas: dict[str, dict[int, FeatureGroupSchema]] = {}
        self._stats_lock = threading.Lock()
        self._stats: dict[str, float] = {
            "reads": 0,
            "entities_read": 0,
            "read_seconds": 0.0,
            "writes": 0,
            "rows_written": 0,
            "rows_rejected": 0,
            "errors": 0,
        }

    # -- identity ------------------------------------------------------------------------------

    @property
    @abstractmethod
    def target(self) -> str:
        """A stable name of where the data lives (sync watermarks are kept per target)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    def remote(self) -> RemoteStore | None:
        """Settings another process can open this store with, or None when the data lives
        in this process (the memory store): a sync then writes from the driver only."""
        return None

    # -- schemas -------------------------------------------------------------------------------

    def register_schema(self, schema: FeatureGroupSchema) -> None:
        """Make a group known to a store that has no registry behind it."""
        self._schemas.setdefault(schema.name, {})[schema.version] = schema
        self._plans.clear()

    def resolve_group(self, group: str | FeatureGroupSchema) -> FeatureGroupSchema:
        """A schema from a schema, `name` (latest version) or `name@version`."""
        if isinstance(group, FeatureGroupSchema):
            if group.version not in self._schemas.get(group.name, {}):
                self.register_schema(group)
            return group
        name, _, version = str(group).partition("@")
        return self._schema(name, int(version) if version else None)

    def _schema(self, name: str, version: int | None) -> FeatureGroupSchema:
        known = self._schemas.get(name, {})
        if version is not None and version in known:
            return known[version]
        if self._resolver is not None:
            return self._resolver(name, version)
        if known and version is None:
            return known[max(known)]
        raise FeatureGroupNotFoundError(
            f"The {self.backend} online store does not know the feature group '{name}'"
            + (f" v{version}." if version is not None else "."),
            fix="register the group (store.register_features) and sync it to the online store, "
            "or pass its schema to write_batch.",
            group=name,
        )

    # -- writes --------------------------------------------------------------------------------

    def write_batch(
        self,
        group: str | FeatureGroupSchema,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        force: bool = False,
    ) -> OnlineWriteResult:
        """Write rows (mappings, or a pandas DataFrame) of one group.

        Each row needs the entity keys and the event time (the group's `timestamp_key`);
        `_ingested_at` is optional (default: now). Rows that lack them or hold a value of the
        wrong type are skipped and reported; rows older than what is stored are rejected.
        `force=True` writes regardless of event time (repairs only).
        """
        schema = self.resolve_group(group)
        records, skipped, ignored = _records_from_rows(schema, _iter_rows(rows))
        written, rejected = self.write_records(schema, records, force=force)
        return OnlineWriteResult(
            group=schema.name,
            version=schema.version,
            received=len(records) + len(skipped),
            written=written,
            rejected=rejected,
            skipped=len(skipped),
            skipped_reasons=skipped[:MAX_REPORTED],
            ignored_columns=sorted(ignored),
        )

    def write_records(
        self, schema: FeatureGroupSchema, records: Sequence[OnlineRecord], *, force: bool = False
    ) -> tuple[int, int]:
        """Write checked records; returns (written, rejected as older)."""
        if not records:
            return 0, 0
        request = WriteRequest.of(schema, force)
        return self._count(schema, len(records), lambda: self._write(request, records))

    def write_columns(
        self, schema: FeatureGroupSchema, batch: ColumnBatch, *, force: bool = False
    ) -> tuple[int, int]:
        """Write checked rows given as columns (used by sync); returns (written, rejected)."""
        if not batch.entities:
            return 0, 0
        request = WriteRequest.of(schema, force)
        return self._count(schema, len(batch.entities), lambda: self._write_columns(request, batch))

    def write_arrow(
        self,
        schema: FeatureGroupSchema,
        tables: Iterable[Any],
        *,
        force: bool = False,
        batch_rows: int = 5_000,
    ) -> tuple[int, int]:
        """Write latest-rows Arrow tables (layout: `online.arrow_rows`), compare-and-set like
        every write; returns (written, rejected as older). Used by sync: Redis encodes the
        columns directly and streams them; other stores take `batch_rows`-row `ColumnBatch`es.
        """
        request = WriteRequest.of(schema, force)
        started = time.perf_counter()
        written, rejected = self._call(
            f"writing rows of group '{schema.name}'",
            lambda: self._write_arrow(request, tables, batch_rows),
        )
        self._counted(schema, written, rejected, started)
        return written, rejected

    def record_writes(self, written: int, rejected: int, writes: int = 1) -> None:
        """Count rows that other processes wrote on this store's behalf (a sync pushing
        from Spark executors), so `stats()` covers them."""
        with self._stats_lock:
            self._stats["writes"] += writes
            self._stats["rows_written"] += written
            self._stats["rows_rejected"] += rejected

    def _count(
        self, schema: FeatureGroupSchema, rows: int, write: Callable[[], list[bool]]
    ) -> tuple[int, int]:
        started = time.perf_counter()
        accepted = self._call(f"writing {rows} row(s) of group '{schema.name}'", write)
        written = sum(accepted)
        rejected = rows - written
        self._counted(schema, written, rejected, started)
        return written, rejected

    def _counted(
        self, schema: FeatureGroupSchema, written: int, rejected: int, started: float
    ) -> None:
        self.record_writes(written, rejected)
        logger.debug(
            "{} wrote {} row(s) of {}, rejected {} older, in {:.1f} ms",
            self.backend,
            written,
            schema.name,
            rejected,
            (time.perf_counter() - started) * 1000,
        )

    # -- reads ---------------------------------------------------------------------------------

    def get(
        self,
        feature_refs: str | Sequence[str],
        entity_keys: Any,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> list[FeatureVector]:
        """The latest values of `feature_refs` for each entity, one vector per entity.

        `entity_keys`: a sequence of entities, each one value (single-key groups), a dict
        {key: value} or a tuple in key order; or a pandas DataFrame of key columns. Missing
        features take `defaults[name]` (by output name or `group.feature`), else None.
        """
        started = time.perf_counter()
        plan = self._plan(feature_refs)
        if plan.composites is not None:
            from featurelake.online.composites import compose_vectors

            return compose_vectors(
                plan.composites, lambda refs: self.get(refs, entity_keys), defaults
            )
        entities = entity_list(entity_keys)
        requests = [
            ReadRequest(
                g.schema, g.features, [entity_id(g.schema.entity_keys, e) for e in entities]
            )
            for g in plan.groups
        ]
        results = self._call(
            f"reading {len(plan.names)} feature(s) of {len(entities)} entit(ies)",
            lambda: self._read(requests),
        )
        fill = {**plan.empty_values, **self._fill_values(plan, defaults)}
        now = now_micros()
        width = len(plan.names)
        vectors = []
        single_group = len(plan.groups) == 1
        for i, entity in enumerate(entities):
            values: list[Any] = [None] * width
            event_us: list[int | None] = [None] * width
            for group_plan, rows in zip(plan.groups, results, strict=True):
                row = rows[i]
                if row is None:
                    continue
                for position, value in zip(group_plan.positions, row.values, strict=True):
                    if value is ABSENT:
                        continue
                    values[position] = value
                    event_us[position] = row.event_us
            if fill:
                for position, value in fill.items():
                    if event_us[position] is None:
                        values[position] = value
            if single_group:
                keys = plan.groups[0].schema.entity_keys
                entity_keys_of = entity_dict(keys, entity)
            else:
                entity_keys_of = {}
                for group_plan in plan.groups:
                    entity_keys_of.update(entity_dict(group_plan.schema.entity_keys, entity))
            vectors.append(
                FeatureVector(entity_keys_of, plan.names, plan.index, values, event_us, now)
            )
        with self._stats_lock:
            self._stats["reads"] += 1
            self._stats["entities_read"] += len(entities)
            self._stats["read_seconds"] += time.perf_counter() - started
        return vectors

    def _fill_values(self, plan: OnlinePlan, defaults: Mapping[str, Any] | None) -> dict[int, Any]:
        merged = {**self._defaults, **(defaults or {})}
        if not merged:
            return {}
        fill = {}
        for name, value in merged.items():
            position = plan.index.get(name)
            if position is not None:
                fill[position] = value
        return fill

    def plan(self, feature_refs: str | Sequence[str]) -> OnlinePlan:
        """The read plan of `feature_refs` (cached; unknown groups and features raise here)."""
        return self._plan(feature_refs)

    def _plan(self, feature_refs: str | Sequence[str]) -> OnlinePlan:
        """A cached plan. An expired one is still used while a thread rebuilds it, so a
        registry reload (a Delta read) never lands on a read's latency."""
        cache_key = (feature_refs,) if isinstance(feature_refs, str) else tuple(feature_refs)
        plan = self._plans.get(cache_key)
        if plan is None:
            return self._store_plan(cache_key)
        if plan.expires <= time.monotonic() and cache_key not in self._refreshing:
            self._refreshing.add(cache_key)
            threading.Thread(
                target=self._refresh_plan, args=(cache_key,), name="featurelake-plan", daemon=True
            ).start()
        return plan

    def _store_plan(self, cache_key: tuple[str, ...]) -> OnlinePlan:
        plan = self._build_plan(cache_key)
        if len(self._plans) > 1024:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan

    def _refresh_plan(self, cache_key: tuple[str, ...]) -> None:
        try:
            self._store_plan(cache_key)
        except Exception as error:  # a removed group: the next synchronous build raises
            logger.warning("refreshing the online read plan {} failed: {}", cache_key, error)
            self._plans.pop(cache_key, None)
        finally:
            self._refreshing.discard(cache_key)

    def _build_plan(self, feature_refs: str | Sequence[str]) -> OnlinePlan:
        """Output positions follow the references (a wildcard in the group's feature order)."""
        resolved: dict[tuple[str, int | None], FeatureGroupSchema] = {}

        def lookup(name: str, version: int | None) -> FeatureGroupSchema:
            if (name, version) not in resolved:
                resolved[(name, version)] = self._schema(name, version)
            return resolved[(name, version)]

        expanded = expand_composites(feature_refs, lookup)
        if expanded.has_composites:
            from featurelake.online.composites import output_layout

            outputs, positions = output_layout(expanded)
            stored = self._build_plan(list(expanded.refs))
            return replace(stored, names=outputs, index=positions, composites=expanded)
        schemas: dict[str, FeatureGroupSchema] = {}
        ordered: list[tuple[str, str]] = []  # (group, feature), each once, in request order
        for ref in parse_refs(feature_refs):
            schema = schemas.setdefault(ref.group, lookup(ref.group, ref.version))
            if ref.version is not None and schema.version != ref.version:
                raise two_versions_error(ref.group, schema.version, ref.version)
            wanted = (
                schema.feature_names if ref.is_wildcard else (schema.feature(ref.feature).name,)
            )
            ordered.extend((ref.group, f) for f in wanted if (ref.group, f) not in ordered)
        counts: dict[str, int] = {}
        for _, feature in ordered:
            counts[feature] = counts.get(feature, 0) + 1
        names: list[str] = []
        index: dict[str, int] = {}
        per_group: dict[str, tuple[list[str], list[int]]] = {g: ([], []) for g in schemas}
        for position, (group, feature) in enumerate(ordered):
            schema = schemas[group]
            name = feature if counts[feature] == 1 else f"{group}__{feature}"
            names.append(name)
            index[name] = position
            index[f"{group}.{feature}"] = position
            index[f"{group}@{schema.version}.{feature}"] = position
            per_group[group][0].append(feature)
            per_group[group][1].append(position)
        groups = tuple(
            GroupPlan(schemas[g], tuple(features), tuple(positions))
            for g, (features, positions) in per_group.items()
        )
        empty = {
            position: 0 if feature in _counted(group.schema) else default
            for group in groups
            for feature, position in zip(group.features, group.positions, strict=True)
            if feature in _counted(group.schema)
            or (default := group.schema.feature(feature).default_value) is not None
        }
        expires = time.monotonic() + self._plan_cache_seconds
        return OnlinePlan(groups, tuple(names), index, expires, empty_values=empty)

    # -- single values and their versions ---------------------------------------------------

    def _feature(self, feature_ref: str) -> tuple[FeatureGroupSchema, str]:
        ref = parse_refs(feature_ref)[0]
        if ref.is_wildcard:
            raise SchemaValidationError(
                f"'{feature_ref}' names a whole group; a single value needs one feature.",
                fix="write 'group.feature'.",
            )
        schema = self._schema(ref.group, ref.version)
        return schema, schema.feature(ref.feature).name

    def set_value(
        self, feature_ref: str, entity: Any, value: Any, *, event_time: Any = None
    ) -> bool:
        """Write one feature value of one entity (event time: now unless given). Returns
        False when the store holds a newer event (an older event never overwrites it)."""
        schema, feature = self._feature(feature_ref)
        row = {
            **entity_dict(schema.entity_keys, entity),
            schema.timestamp_key: event_time if event_time is not None else utc_now(),
            feature: value,
        }
        result = self.write_batch(schema, [row])
        if result.skipped:
            raise SchemaValidationError(
                f"The value of '{feature_ref}' was not written: {result.skipped_reasons[0]}.",
                fix=f"pass a value of type {schema.feature(feature).data_type}.",
            )
        return result.written == 1

    def get_value(self, feature_ref: str, entity: Any) -> FeatureValue | None:
        """The current value of one feature of one entity with its version, event time and
        age; None when the entity has none."""
        history = self.get_value_history(feature_ref, entity, limit=1)
        return history[0] if history else None

    def get_value_history(
        self, feature_ref: str, entity: Any, limit: int | None = None
    ) -> list[FeatureValue]:
        """The kept versions of one feature value of one entity, newest first (the last
        `history_size` writes; only the current value when no history is kept)."""
        schema, feature = self._feature(feature_ref)
        key = entity_id(schema.entity_keys, entity)
        size = max(self.history_size, 1) if limit is None else min(limit, max(self.history_size, 1))
        stored = self._call(
            f"reading the history of '{feature_ref}'",
            lambda: self._value_history(schema, key, feature, size),
        )
        now = now_micros()
        return [
            FeatureValue(
                feature,
                item.value,
                from_micros(item.event_us),
                timedelta(microseconds=now - item.event_us),
                True,
                item.version,
            )
            for item in stored
        ]

    def delete_value(self, feature_ref: str, entity: Any) -> bool:
        """Remove one feature value of one entity and its history; True when there was one."""
        schema, feature = self._feature(feature_ref)
        key = entity_id(schema.entity_keys, entity)
        return bool(
            self._call(
                f"deleting '{feature_ref}' of one entity",
                lambda: self._delete_value(schema, key, feature),
            )
        )

    # -- deletes, health, lifecycle ------------------------------------------------------------

    def delete(self, group: str | FeatureGroupSchema, entity_keys: Any = None) -> int:
        """Delete some entities of a group, or all of them when `entity_keys` is None."""
        schema = self.resolve_group(group)
        ids = (
            None
            if entity_keys is None
            else [entity_id(schema.entity_keys, e) for e in entity_list(entity_keys)]
        )
        what = "all entities" if ids is None else f"{len(ids)} entit(ies)"
        return int(
            self._call(
                f"deleting {what} of group '{schema.name}'", lambda: self._delete(schema, ids)
            )
        )

    def health_check(self) -> dict[str, Any]:
        """{'healthy': bool, 'backend', 'target', 'latency_ms', ...}; never raises."""
        started = time.perf_counter()
        try:
            details = self._health()
            healthy = True
        except Exception as error:
            details = {"error": str(error).splitlines()[0] if str(error) else repr(error)}
            healthy = False
        return {
            "healthy": healthy,
            "backend": self.backend,
            "target": self.target,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            **details,
        }

    def stats(self) -> dict[str, float]:
        """Counters since the store was opened: reads, rows written/rejected, errors."""
        with self._stats_lock:
            return dict(self._stats)

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        self._close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- error wrapping ------------------------------------------------------------------------

    def _call(self, what: str, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except FeatureStoreError:
            with self._stats_lock:
                self._stats["errors"] += 1
            raise
        except Exception as error:
            with self._stats_lock:
                self._stats["errors"] += 1
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if self._is_unavailable(error):
                raise OnlineStoreUnavailableError(
                    f"The {self.backend} online store at {self.target} did not answer while "
                    f"{what}: {reason}",
                    fix="check that the server is running and reachable (online_url), or raise "
                    "online_timeout_ms; pass fallback_to_offline=True to read the offline store "
                    "instead.",
                    target=self.target,
                ) from error
            raise OnlineStoreError(
                f"The {self.backend} online store at {self.target} failed while {what}: {reason}",
                fix="see the cause above; the store is unchanged for rows not reported written.",
                target=self.target,
            ) from error

    def _is_unavailable(self, error: BaseException) -> bool:
        """True for errors meaning the store cannot be reached (timeouts, dropped connections)."""
        return isinstance(error, TimeoutError | ConnectionError)

    # -- what a backend implements -------------------------------------------------------------

    @abstractmethod
    def _write(self, request: WriteRequest, records: Sequence[OnlineRecord]) -> list[bool]:
        """Compare-and-set each record; True where it was written."""

    def _write_columns(self, request: WriteRequest, batch: ColumnBatch) -> list[bool]:
        """Like `_write`, for rows given as columns; override when columns are faster."""
        names = batch.names
        rows = zip(*batch.columns, strict=True) if batch.columns else (() for _ in batch.entities)
        records = [
            OnlineRecord(entity, event, ingested, dict(zip(names, values, strict=True)))
            for entity, event, ingested, values in zip(
                batch.entities, batch.event_us, batch.ingested_us, rows, strict=False
            )
        ]
        return self._write(request, records)

    def _write_arrow(
        self, request: WriteRequest, tables: Iterable[Any], batch_rows: int
    ) -> tuple[int, int]:
        """Like `_write_columns`, for latest-rows Arrow tables; returns (written, rejected).
        Override when the backend can take the columns without Python values."""
        from featurelake.online.arrow_rows import column_batches

        written = rows = 0
        for table in tables:
            for batch in column_batches(request.schema, table, batch_rows):
                written += sum(self._write_columns(request, batch))
                rows += len(batch.entities)
        return written, rows - written

    @abstractmethod
    def _read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """For each request, one row (or None) per entity, values in `features` order."""

    @abstractmethod
    def _delete(self, schema: FeatureGroupSchema, entities: list[str] | None) -> int:
        """Delete entities (all of the group when None); returns how many were deleted."""

    @abstractmethod
    def _value_history(
        self, schema: FeatureGroupSchema, entity: str, feature: str, limit: int
    ) -> list[StoredValue]:
        """Up to `limit` kept versions of a feature value, newest first (the current value,
        version None, when no history is kept)."""

    @abstractmethod
    def _delete_value(self, schema: FeatureGroupSchema, entity: str, feature: str) -> bool:
        """Remove a feature value (and its history) of an entity."""

    @abstractmethod
    def _health(self) -> dict[str, Any]:
        """Details of a successful check; raise when unhealthy."""

    @abstractmethod
    def _close(self) -> None:
        """Release resources."""


# -- helpers ----------------------------------------------------------------------------------


def _counted(schema: FeatureGroupSchema) -> set[str]:
    """Features of an aggregation group that count (0 when there is nothing to count)."""
    return {
        name
        for aggregation in schema.aggregations
        if aggregation.function in ("count", "approx_count_distinct")
        for name, _ in aggregation.outputs()
    }


def _iter_rows(rows: Any) -> Iterable[Mapping[str, Any]]:
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "to_dict"):
        # NaN, NaT and pd.NA are nulls, as when Spark reads a pandas DataFrame.
        frame = rows.astype(object).where(rows.notna(), None)
        return list(frame.to_dict("records"))
    if isinstance(rows, Mapping):
        return [rows]
    return rows


def _records_from_rows(
    schema: FeatureGroupSchema, rows: Iterable[Mapping[str, Any]]
) -> tuple[list[OnlineRecord], list[str], set[str]]:
    """Checked records, reasons for skipped rows, and columns that are not in the group."""
    keys = schema.entity_keys
    ts_key = schema.timestamp_key
    features = set(schema.feature_names)
    known = {*keys, ts_key, INGESTED_AT, *features}
    checks = {f.name: _checker(f.data_type.kind) for f in schema.features}
    records: list[OnlineRecord] = []
    skipped: list[str] = []
    ignored: set[str] = set()
    now = now_micros()
    for number, row in enumerate(rows):
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            skipped.append(f"row {number}: no value for the entity key(s) {missing}")
            continue
        if row.get(ts_key) is None:
            skipped.append(f"row {number}: no event time '{ts_key}'")
            continue
        try:
            event_us = to_micros(row[ts_key], what=f"the event time '{ts_key}'")
            ingested = row.get(INGESTED_AT)
            ingested_us = now if ingested is None else to_micros(ingested, what=INGESTED_AT)
            entity = entity_id(keys, row)
        except SchemaValidationError as error:
            skipped.append(f"row {number}: {error.message}")
            continue
        values: dict[str, Any] = {}
        bad = None
        for name, value in row.items():
            if name in features:
                checked = checks[name](value)
                if checked is _BAD:
                    wanted = schema.feature(name).data_type
                    bad = f"row {number}: '{name}' = {value!r} is not a {wanted}"
                    break
                values[name] = checked
            elif name not in known:
                ignored.add(name)
        if bad is not None:
            skipped.append(bad)
            continue
        records.append(OnlineRecord(entity, event_us, ingested_us, values))
    return records, skipped, ignored


_BAD = object()


def _checker(kind: DataType) -> Callable[[Any], Any]:
    """A function returning the value (converted where lossless) or `_BAD`."""

    def integer(value: Any) -> Any:
        value = _plain(value)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        return _BAD

    def floating(value: Any) -> Any:
        value = _plain(value)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _BAD

    def timestamp(value: Any) -> Any:
        value = _plain(value)
        if value is None or type(value) is datetime:
            return value
        if isinstance(value, datetime):  # pandas Timestamp
            return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
        return _BAD

    def of(*types: type) -> Callable[[Any], Any]:
        def check(value: Any) -> Any:
            value = _plain(value)
            return value if value is None or isinstance(value, types) else _BAD

        return check

    def array(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return list(value)
        tolist = getattr(value, "tolist", None)
        return tolist() if tolist is not None else _BAD

    def anything(value: Any) -> Any:
        return value

    table: dict[DataType, Callable[[Any], Any]] = {
        DataType.INT: integer,
        DataType.BIGINT: integer,
        DataType.FLOAT: floating,
        DataType.DOUBLE: floating,
        DataType.DECIMAL: of(Decimal, int),
        DataType.STRING: of(str),
        DataType.BOOLEAN: of(bool),
        DataType.TIMESTAMP: timestamp,
        DataType.DATE: of(date),
        DataType.ARRAY: array,
        DataType.MAP: of(Mapping),
    }
    return table.get(kind, anything)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values; pandas/numpy missing markers as None."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    return value
