"""`store.metadata`: the registry seen as a catalog of groups and features, with lineage per
feature (the calls other feature stores' metadata objects have)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from featurelake.errors import FeatureNotFoundError
from featurelake.schema import FeatureGroupSchema, FeatureSchema, parse_refs

if TYPE_CHECKING:
    from featurelake.registry import RegistrationResult, Registry

FEATURE_LINEAGE = "feature_lineage"


class MetadataHost(Protocol):
    """What the metadata view needs of its store (`FeatureStore`)."""

    @property
    def registry(self) -> Registry: ...

    def register_features(self, group_schema: FeatureGroupSchema) -> RegistrationResult: ...

    def resolve_group(self, group: str | FeatureGroupSchema) -> FeatureGroupSchema: ...

    def feature_refs(self, feature_refs: str | Sequence[str]) -> str | list[str]: ...


class StoreMetadata:
    """Groups, features, last updates and feature lineage of one store (read from and kept
    in its registry, so every process pointed at the store sees the same)."""

    def __init__(self, store: MetadataHost) -> None:
        self.store = store

    def register_feature_group(self, schema: FeatureGroupSchema) -> RegistrationResult:
        """`store.register_features(schema)`."""
        return self.store.register_features(schema)

    def get_feature_group(self, name: str) -> FeatureGroupSchema:
        """A registered group: `name` (latest version) or `name@version`."""
        return self.store.resolve_group(name)

    def list_feature_groups(self) -> list[str]:
        """The names of the registered groups."""
        return [schema.name for schema in self.store.registry.list_groups()]

    def get_feature(self, group: str, feature: str) -> FeatureSchema:
        """One feature's definition (FeatureNotFoundError lists the group's features)."""
        return self.get_feature_group(group).feature(feature)

    def list_features(self, group: str) -> list[str]:
        """The feature names of a group, in declaration order."""
        return list(self.get_feature_group(group).feature_names)

    def get_last_updated(self, group: str) -> datetime | None:
        """When the group's Gold table was last written (None before its first write)."""
        schema = self.get_feature_group(group)
        value = self.store.registry.group_state(schema.name, schema.version).last_updated
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value

    def set_lineage(self, feature: str, dependencies: Sequence[str]) -> None:
        """Record what a feature (`group.feature`, or a bare name one group has) is computed
        from: other features, tables or paths."""
        ref = self._ref(feature)
        if isinstance(dependencies, str):
            dependencies = [dependencies]
        self.store.registry.put_object(
            FEATURE_LINEAGE, ref, {"feature": ref, "dependencies": [str(d) for d in dependencies]}
        )

    def get_lineage(self, feature: str) -> list[str]:
        """What `set_lineage` recorded for a feature (empty when nothing was)."""
        payload = self.store.registry.get_object(FEATURE_LINEAGE, self._ref(feature))
        return list(payload["dependencies"]) if payload else []

    def _ref(self, feature: str) -> str:
        refs = self.store.feature_refs(feature)
        ref = parse_refs(refs)[0]
        schema = self.get_feature_group(ref.group)
        if ref.is_wildcard:
            raise FeatureNotFoundError(
                f"'{feature}' names a whole group; lineage is kept per feature.",
                fix=f"name one feature, e.g. '{schema.name}.{schema.feature_names[0]}'.",
            )
        return f"{schema.name}.{schema.feature(ref.feature).name}"

    def describe(self, group: str) -> dict[str, Any]:
        """A group's definition as a dict (what `featurelake describe` prints)."""
        return self.get_feature_group(group).to_dict()
