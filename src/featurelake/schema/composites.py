"""Requests with composite features: which stored features to read, and what to compute after.

`expand_composites(refs, resolve)` turns the references of a request into the stored
features to read (the requested ones plus each composite's inputs) and the composites to
evaluate on them. Offline and online stores both use it, then evaluate each composite with the
same compiled expression (a Spark column offline, a Python callable online).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from featurelake.errors import SchemaValidationError
from featurelake.schema.aggregations import CompositeFeature
from featurelake.schema.model import FeatureGroupSchema
from featurelake.schema.refs import FeatureRef, parse_refs, two_versions_error

Resolver = Callable[[str, int | None], FeatureGroupSchema]


@dataclass(frozen=True)
class CompositeRequest:
    """One composite to compute: its owner group, and each expression reference's input."""

    group: FeatureGroupSchema
    composite: CompositeFeature
    inputs: dict[str, tuple[str, str]]
    """Expression reference -> (group name, feature name) of the stored feature it reads."""


@dataclass(frozen=True)
class ExpandedRequest:
    """Stored features to read and composites to compute, in request order."""

    refs: tuple[str, ...]
    """`group@version.feature` of every stored feature to read (requested or an input)."""
    requested: tuple[tuple[str, str], ...]
    """(group, name) of each output in request order, stored features and composites mixed."""
    composites: tuple[CompositeRequest, ...]

    @property
    def has_composites(self) -> bool:
        return bool(self.composites)

    def is_composite(self, group: str, name: str) -> bool:
        return any(c.group.name == group and c.composite.name == name for c in self.composites)


def expand_composites(feature_refs: str | Iterable[str], resolve: Resolver) -> ExpandedRequest:
    """Expand `group.composite` and `group.*` (features, then composites) references."""
    schemas: dict[str, FeatureGroupSchema] = {}

    def schema_of(ref: FeatureRef) -> FeatureGroupSchema:
        known = schemas.get(ref.group)
        if known is not None and (ref.version is None or ref.version == known.version):
            return known
        schema = resolve(ref.group, ref.version)
        if known is not None and known.version != schema.version:
            raise two_versions_error(ref.group, known.version, schema.version)
        schemas[ref.group] = schema
        return schema

    stored: list[tuple[str, str]] = []
    requested: list[tuple[str, str]] = []
    composites: list[CompositeRequest] = []
    for ref in parse_refs(feature_refs):
        schema = schema_of(ref)
        by_name = {c.name: c for c in schema.composites}
        names = [*schema.feature_names, *by_name] if ref.is_wildcard else [ref.feature]
        for name in names:
            if (schema.name, name) in requested:
                continue
            requested.append((schema.name, name))
            composite = by_name.get(name)
            if composite is None:
                schema.feature(name)  # unknown names raise FeatureNotFoundError here
                if (schema.name, name) not in stored:
                    stored.append((schema.name, name))
                continue
            inputs: dict[str, tuple[str, str]] = {}
            for source in composite.source_features:
                owner, _, feature = source.rpartition(".")
                target = (
                    schema if owner in ("", schema.name) else schema_of(FeatureRef(owner, feature))
                )
                if feature not in target.feature_names:
                    what = (
                        "a composite"
                        if any(c.name == feature for c in target.composites)
                        else ("not one of its features")
                    )
                    raise SchemaValidationError(
                        f"Composite feature '{schema.name}.{composite.name}' reads "
                        f"'{target.name}.{feature}', which is {what}.",
                        fix=f"read stored features of '{target.name}': "
                        f"{', '.join(target.feature_names)}.",
                    )
                kind = target.feature(feature).data_type
                if not (kind.is_numeric or kind.simple_string() == "boolean"):
                    raise SchemaValidationError(
                        f"Composite feature '{schema.name}.{composite.name}' reads "
                        f"'{target.name}.{feature}' of type {kind}, which is not a number.",
                        fix="composite expressions compute on numeric or boolean features.",
                    )
                inputs[source] = (target.name, feature)
                if (target.name, feature) not in stored:
                    stored.append((target.name, feature))
            composites.append(CompositeRequest(schema, composite, inputs))
    refs = tuple(f"{g}@{schemas[g].version}.{f}" for g, f in stored)
    return ExpandedRequest(refs, tuple(requested), tuple(composites))


def check_composite_sources(schema: FeatureGroupSchema, resolve: Resolver) -> None:
    """At registration: every group.feature a composite reads exists and is numeric."""
    if schema.composites:
        own = {schema.name: schema}

        def lookup(name: str, version: int | None) -> FeatureGroupSchema:
            return own[name] if name in own else resolve(name, version)

        expand_composites([f"{schema.name}.{c.name}" for c in schema.composites], lookup)
