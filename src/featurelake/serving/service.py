"""Feature services: named sets of features (from one or more groups) with their transforms.

A service is what a model asks for: `get_features("churn_model", [42, 43])` reads the latest
values online and applies the service's request-time transforms. Definitions are stored in the
registry (kind `feature_service`), so every process pointed at the store sees them. Records
can be pushed straight into the online store with `ingest` / `ingest_batch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from featurelake.errors import FeatureNotFoundError, SchemaValidationError
from featurelake.online import FeatureVector, OnlineWriteResult, vectors_to_pandas
from featurelake.online.values import entity_dict
from featurelake.schema import FeatureGroupSchema, parse_refs
from featurelake.serving.transforms import FeatureTransform, TransformError

if TYPE_CHECKING:
    import pandas as pd

    from featurelake.config import FeatureStoreConfig
    from featurelake.online import OnlineStore
    from featurelake.registry import Registry


SERVICE_KIND = "feature_service"
MAX_REPORTED = 20


@dataclass(frozen=True)
class ServiceDefinition:
    """A registered feature service."""

    name: str
    features: tuple[str, ...]
    transforms: Mapping[str, FeatureTransform] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    owner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": list(self.features),
            "transforms": {k: t.to_dict() for k, t in self.transforms.items()},
            "defaults": dict(self.defaults),
            "description": self.description,
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceDefinition:
        return cls(
            name=str(data["name"]),
            features=tuple(data["features"]),
            transforms={
                k: FeatureTransform.from_dict(v) for k, v in (data.get("transforms") or {}).items()
            },
            defaults=dict(data.get("defaults") or {}),
            description=data.get("description") or "",
            owner=data.get("owner"),
        )


IngestResult = OnlineWriteResult
"""What an ingest did (the online write's result, with the rows it also wrote to Gold)."""


class ServiceHost(Protocol):
    """What feature services need of the store that holds them (`FeatureStore`)."""

    @property
    def config(self) -> FeatureStoreConfig: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def online(self) -> OnlineStore: ...

    @property
    def register_features(self) -> Callable[..., Any]: ...

    @property
    def write_features(self) -> Callable[..., Any]: ...

    @property
    def get_online_features(self) -> Callable[..., Any]: ...

    @property
    def get_vector(self) -> Callable[..., Any]: ...

    @property
    def online_plan(self) -> Callable[..., Any]: ...


class FeatureService:
    """Register feature services, read them with transforms applied, push records online."""

    def __init__(self, store: ServiceHost, transform: FeatureTransform | None = None) -> None:
        self.store = store
        self.transform = transform
        """Applied by `get_features(entity_id, feature_names, apply_transform=True)`."""
        self._parsed: dict[str, tuple[dict[str, Any], ServiceDefinition]] = {}

    def register_group(self, group: FeatureGroupSchema) -> Any:
        """`store.register_features(group)`."""
        return self.store.register_features(group)

    def get_group_features(self, entity_id: Any, group: str) -> FeatureVector:
        """Every feature of `group` for one entity, from the online store."""
        return self.store.get_vector(entity_id, f"{group}.*")

    # -- definitions ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        features: str | Sequence[str],
        *,
        transforms: Mapping[str, FeatureTransform] | None = None,
        defaults: Mapping[str, Any] | None = None,
        description: str = "",
        owner: str | None = None,
    ) -> ServiceDefinition:
        """Create or replace a service. Every reference and transform key is checked first.

        `transforms` and `defaults` are keyed by output name (`age`, or `group__age` when two
        groups share a name) or by reference (`customer_profile.age`).
        """
        if not isinstance(name, str) or not name.strip():
            raise SchemaValidationError(
                "A feature service needs a name.", fix="pass a name such as 'churn_model'."
            )
        refs = [str(ref) for ref in parse_refs(features)]
        definition = ServiceDefinition(
            name=name,
            features=tuple(refs),
            transforms=dict(transforms or {}),
            defaults=dict(defaults or {}),
            description=description,
            owner=owner,
        )
        for key, transform in definition.transforms.items():
            if not isinstance(transform, FeatureTransform):
                raise TransformError(
                    f"The transform for '{key}' in service '{name}' is a "
                    f"{type(transform).__name__}.",
                    fix="pass FeatureTransform objects, e.g. FeatureTransform.clip(0, 1).",
                )
        self._check(definition)
        self.store.registry.put_object(SERVICE_KIND, name, definition.to_dict())
        return definition

    def _check(self, definition: ServiceDefinition) -> None:
        plan = self.store.online_plan(definition.features)
        for kind, keys in (("transform", definition.transforms), ("default", definition.defaults)):
            unknown = [k for k in keys if k not in plan.index]
            if unknown:
                raise FeatureNotFoundError(
                    f"Service '{definition.name}' has a {kind} for {unknown}, which it does not "
                    "serve.",
                    fix=f"key {kind}s by one of: {', '.join(plan.names)}.",
                    service=definition.name,
                )

    def get(self, name: str) -> ServiceDefinition:
        """A registered service, or FeatureNotFoundError listing the ones there are."""
        payload = self.store.registry.get_object(SERVICE_KIND, name)
        if payload is None:
            known = sorted(self.store.registry.list_objects(SERVICE_KIND))
            raise FeatureNotFoundError(
                f"No feature service '{name}' is registered in {self.store.config.storage_path}.",
                fix=(
                    f"use one of: {', '.join(known)}."
                    if known
                    else "register it first: store.services.register(name, features)."
                ),
                service=name,
            )
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == payload:
            return cached[1]
        definition = ServiceDefinition.from_dict(payload)
        self._parsed[name] = (payload, definition)
        return definition

    def list_services(self) -> list[ServiceDefinition]:
        """Every registered service, by name."""
        objects = self.store.registry.list_objects(SERVICE_KIND)
        return [ServiceDefinition.from_dict(objects[k]) for k in sorted(objects)]

    def delete(self, name: str) -> None:
        self.get(name)
        self.store.registry.delete_object(SERVICE_KIND, name)
        self._parsed.pop(name, None)

    # -- reads ---------------------------------------------------------------------------------

    def get_features(
        self,
        service: str | ServiceDefinition | Any = None,
        entity_keys: Any = None,
        *,
        as_frame: bool = False,
        fallback_to_offline: bool = False,
        apply_transform: bool | None = None,
        entity_id: Any = None,
        feature_names: str | Sequence[str] | None = None,
    ) -> list[FeatureVector] | pd.DataFrame | FeatureVector:
        """The service's features for each entity, transforms applied (one vector each).

        Also `get_features(entity_id, feature_names, apply_transform=True)`: one entity's
        vector of those features (refs or bare names), with `self.transform` applied when
        `apply_transform`."""
        if apply_transform is not None or entity_id is not None or feature_names is not None:
            entity = entity_id if entity_id is not None else service
            names = feature_names if feature_names is not None else entity_keys
            vector = self.store.get_vector(entity, names)
            if apply_transform and self.transform is not None:
                transformed: FeatureVector = self.transform.apply(vector)
                return transformed
            return vector
        definition = service if isinstance(service, ServiceDefinition) else self.get(service)
        vectors = self.store.get_online_features(
            list(definition.features),
            entity_keys,
            defaults=definition.defaults,
            fallback_to_offline=fallback_to_offline,
        )
        assert isinstance(vectors, list)
        if definition.transforms:
            vectors = [_transformed(v, definition.transforms) for v in vectors]
        return vectors_to_pandas(vectors) if as_frame else vectors

    # -- pushes --------------------------------------------------------------------------------

    def ingest(
        self,
        group: str | FeatureGroupSchema | Mapping[str, Any],
        record: Mapping[str, Any] | Any,
        *,
        to_offline: bool = False,
    ) -> IngestResult:
        """Push one record of a group online (see `ingest_batch`). Also `ingest(features,
        entity_id)`: a dict of feature values (bare names of one group) for one entity."""
        if isinstance(group, Mapping):
            schema = self._group_of(group.keys())
            keys = schema.entity_keys
            row = {**entity_dict(keys, record), **group}
            return self.ingest_batch(schema, [row], to_offline=to_offline)
        return self.ingest_batch(group, [record], to_offline=to_offline)

    def ingest_batch(
        self,
        group: str | FeatureGroupSchema | Iterable[Mapping[str, Any]],
        records: Iterable[Mapping[str, Any]] | str | None = None,
        *,
        to_offline: bool = False,
        entity_id_field: str | None = None,
    ) -> IngestResult:
        """Push records of a group into the online store.

        A record without an entity id is skipped and reported; a record without the event
        time gets the current time. Older records than what is stored are rejected. With
        `to_offline=True` the written records are also appended to the Gold table (they then
        need every column of the group). `int(result)` is the number written.

        Also `ingest_batch(records, entity_id_field="user_id")`: the group is the one
        registered group holding the records' features, and `entity_id_field` names the
        field holding its entity key.
        """
        batch: Iterable[Mapping[str, Any]]
        if not isinstance(group, str | FeatureGroupSchema):
            if isinstance(records, str) and entity_id_field is None:
                entity_id_field = records
            group, batch = self._seed_batch(list(group), entity_id_field)
        else:
            batch = () if records is None or isinstance(records, str) else records
            if entity_id_field is not None:
                schema = self.store.online.resolve_group(group)
                batch = _renamed(list(batch), entity_id_field, schema)
        online = self.store.online
        schema = online.resolve_group(group)
        records = batch
        ts_key = schema.timestamp_key
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [
            record if record.get(ts_key) is not None else {**record, ts_key: now}
            for record in records
        ]
        result = online.write_batch(schema, rows)
        offline_rows = 0
        if to_offline and result.written:
            import pandas as pd

            complete = [
                {c: r.get(c) for c in schema.columns}
                for r in rows
                if all(r.get(k) is not None for k in schema.entity_keys)
            ]
            if complete:
                self.store.write_features(
                    f"{schema.name}@{schema.version}", pd.DataFrame(complete), mode="append"
                )
                offline_rows = len(complete)
        return dataclasses.replace(
            result,
            skipped_reasons=result.skipped_reasons[:MAX_REPORTED],
            offline_rows=offline_rows,
        )

    def _group_of(self, names: Iterable[str]) -> FeatureGroupSchema:
        """The one registered group whose columns hold every named field (features, and
        perhaps its keys and event time)."""
        wanted = set(names)
        fits = [
            schema
            for schema in self.store.registry.list_groups()
            if wanted & set(schema.feature_names) and wanted <= set(schema.columns)
        ]
        if len(fits) != 1:
            raise FeatureNotFoundError(
                f"The fields {sorted(wanted)} are the columns of {len(fits)} groups "
                f"({', '.join(s.name for s in fits) or 'none'}); one ingest writes one group.",
                fix="name the group: ingest_batch(group, records) (or ingest(group, record)).",
            )
        return fits[0]

    def _seed_batch(
        self, records: list[Mapping[str, Any]], entity_id_field: str | None
    ) -> tuple[FeatureGroupSchema, list[Mapping[str, Any]]]:
        if entity_id_field is None:
            raise SchemaValidationError(
                "ingest_batch(records) without a group needs entity_id_field= (the field "
                "holding each record's entity id).",
                fix="ingest_batch(records, entity_id_field='user_id'), or "
                "ingest_batch(group, records).",
            )
        schema = self._group_of({k for r in records for k in r if k != entity_id_field})
        return schema, _renamed(records, entity_id_field, schema)


def _renamed(
    records: list[Mapping[str, Any]], field_name: str, schema: FeatureGroupSchema
) -> list[Mapping[str, Any]]:
    """Records whose `field_name` holds the group's (single) entity key."""
    keys = schema.entity_keys
    if field_name in keys:
        return records
    if len(keys) != 1:
        raise SchemaValidationError(
            f"entity_id_field='{field_name}' names one field, and group '{schema.name}' has "
            f"the keys {list(keys)}.",
            fix="give each record every key column, and leave out entity_id_field.",
        )
    key = keys[0]
    return [
        {(key if k == field_name else k): v for k, v in r.items()} if field_name in r else r
        for r in records
    ]


def _transformed(
    vector: FeatureVector, transforms: Mapping[str, FeatureTransform]
) -> FeatureVector:
    changes = {}
    for key, transform in transforms.items():
        changes[key] = transform.apply(vector.get(key))
    return vector.with_values(changes)
