"""Schema evolution: which changes a registered group version may take in place."""

from __future__ import annotations

from enum import StrEnum

from featurelake.errors import SchemaValidationError
from featurelake.schema.model import FeatureGroupSchema


class SchemaChange(StrEnum):
    """How a new definition relates to the registered one of the same version."""

    UNCHANGED = "unchanged"
    COMPATIBLE = "compatible"


def classify_change(old: FeatureGroupSchema, new: FeatureGroupSchema) -> SchemaChange:
    """UNCHANGED, COMPATIBLE (safe in place), or a SchemaValidationError explaining the bump.

    In place: new nullable features, descriptions, tags, owner, ttl, freshness, limits.
    Needs a new version: removed or retyped features, changed keys or timestamp, a new feature
    that is not nullable, a nullable feature made required, changed partitioning.
    """
    if old.fingerprint() == new.fingerprint():
        return SchemaChange.UNCHANGED
    problems: list[str] = []
    if old.entity_keys != new.entity_keys:
        problems.append(
            f"entity keys changed from {list(old.entity_keys)} to {list(new.entity_keys)}"
        )
    if old.timestamp_key != new.timestamp_key:
        problems.append(
            f"timestamp key changed from '{old.timestamp_key}' to '{new.timestamp_key}'"
        )
    if old.partition_columns != new.partition_columns:
        problems.append("partition columns changed")
    problems += _aggregation_changes(old, new)
    new_features = {f.name: f for f in new.features}
    for feature in old.features:
        replacement = new_features.get(feature.name)
        if replacement is None:
            problems.append(f"feature '{feature.name}' was removed")
        elif replacement.data_type != feature.data_type:
            problems.append(
                f"feature '{feature.name}' changed type from {feature.data_type} to "
                f"{replacement.data_type}"
            )
        elif feature.nullable and not replacement.nullable:
            problems.append(f"feature '{feature.name}' became non-nullable")
    old_names = set(old.feature_names)
    for feature in new.features:
        if feature.name not in old_names and not feature.nullable:
            problems.append(f"new feature '{feature.name}' is not nullable")
    if problems:
        raise SchemaValidationError(
            f"Group '{new.name}' v{new.version} is already registered and this definition is "
            f"incompatible with it: {'; '.join(problems)}.",
            fix=f"bump the group version to {old.version + 1} to register the new definition "
            "beside the old one (old data stays readable as v{old.version}).".replace(
                "{old.version}", str(old.version)
            ),
            group=new.name,
            problems=problems,
        )
    return SchemaChange.COMPATIBLE


def _aggregation_changes(old: FeatureGroupSchema, new: FeatureGroupSchema) -> list[str]:
    """An aggregated feature keeps its meaning: same source, column, function and filter."""
    problems = []
    if old.event_source != new.event_source:
        problems.append(f"the event_source changed from {old.event_source} to {new.event_source}")
    meaning = {
        name: (a.column, a.function, a.filter) for a in new.aggregations for name, _ in a.outputs()
    }
    for aggregation in old.aggregations:
        for name, _ in aggregation.outputs():
            now = meaning.get(name)
            if now is not None and now != (
                aggregation.column,
                aggregation.function,
                aggregation.filter,
            ):
                problems.append(f"aggregated feature '{name}' changed its definition")
    return problems
