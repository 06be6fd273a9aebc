"""Feature references resolved once: bare feature names, groups, versions, features and output
column names."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from featurelake.errors import (
    AmbiguousFeatureError,
    FeatureNotFoundError,
    PointInTimeError,
    SchemaValidationError,
)
from featurelake.schema import FeatureGroupSchema, parse_refs
from featurelake.schema.composites import ExpandedRequest
from featurelake.schema.refs import two_versions_error

if TYPE_CHECKING:
    from featurelake.registry import Registry

Selected = dict[str, tuple[FeatureGroupSchema, list[str]]]


def resolve_bare_names(registry: Registry, feature_refs: str | Sequence[str]) -> str | list[str]:
    """`feature_refs` with every bare feature name (no group) as `group.feature`.

    A name is resolved against the latest version of every registered group; a name no group
    has is a FeatureNotFoundError, one several groups have an AmbiguousFeatureError listing
    the candidate references."""
    items = [feature_refs] if isinstance(feature_refs, str) else list(feature_refs)
    bare = [r for r in items if isinstance(r, str) and "." not in r and "@" not in r.strip()]
    if not bare:
        return feature_refs if isinstance(feature_refs, str) else items
    owners: dict[str, list[FeatureGroupSchema]] = {}
    for schema in registry.list_groups():
        for name in (*schema.feature_names, *(c.name for c in schema.composites)):
            owners.setdefault(name, []).append(schema)
    resolved = []
    for ref in items:
        if ref not in bare:
            resolved.append(ref)
            continue
        name = str(ref).strip()
        groups = owners.get(name, [])
        if len(groups) == 1:
            resolved.append(f"{groups[0].name}.{name}")
            continue
        if not groups:
            raise FeatureNotFoundError(
                f"No registered feature group has a feature '{name}'.",
                fix="write 'group.feature' (see store.metadata.list_features(group)), or "
                "register the group that has it.",
                ref=name,
            )
        candidates = [f"{g.name}.{name}" for g in groups]
        raise AmbiguousFeatureError(
            f"The feature name '{name}' is in {len(groups)} groups: {', '.join(candidates)}.",
            fix=f"name the group: one of {', '.join(candidates)}.",
            ref=name,
            candidates=candidates,
        )
    return resolved


def resolve_refs(registry: Registry, feature_refs: str | Sequence[str]) -> Selected:
    """Group -> (schema, features) for the refs; unknown groups/features raise first."""
    selected: Selected = {}
    for ref in parse_refs(feature_refs):
        schema = registry.get_group(ref.group, ref.version)
        entry = selected.setdefault(ref.group, (schema, []))
        if entry[0].version != schema.version:
            raise two_versions_error(ref.group, entry[0].version, schema.version)
        wanted = schema.feature_names if ref.is_wildcard else (schema.feature(ref.feature).name,)
        entry[1].extend(f for f in wanted if f not in entry[1])
    return selected


def output_names(selected: Selected) -> dict[tuple[str, str], str]:
    """Column name per (group, feature): the feature name, or `group__feature` on a clash."""
    counts: dict[str, int] = {}
    for _, features in selected.values():
        for feature in features:
            counts[feature] = counts.get(feature, 0) + 1
    return {
        (schema.name, feature): feature if counts[feature] == 1 else f"{schema.name}__{feature}"
        for schema, features in selected.values()
        for feature in features
    }


def check_entity_keys(selected: Selected, columns: Collection[str]) -> None:
    """Every selected group's entity keys are among the entity rows' `columns`."""
    for schema, _ in selected.values():
        missing = [k for k in schema.entity_keys if k not in columns]
        if missing:
            raise PointInTimeError(
                f"entity_df has no column {missing} for the entity keys of group "
                f"'{schema.name}' ({list(schema.entity_keys)}).",
                fix=f"add the key column(s) {missing} to entity_df, or drop the refs of "
                f"'{schema.name}'.",
                group=schema.name,
            )


def entity_timestamp_column(
    columns: Sequence[str],
    timestamp_typed: Sequence[str],
    requested: str | None,
    selected: Selected,
) -> str:
    """The entity rows' time column: `requested`; else `event_timestamp` or a selected group's
    timestamp key; else the one column of a timestamp type (`timestamp_typed`)."""
    if requested:
        if requested not in columns:
            raise PointInTimeError(
                f"entity_df has no column '{requested}'.",
                fix=f"pass timestamp_column= one of {list(columns)}.",
            )
        return requested
    candidates = {schema.timestamp_key for schema, _ in selected.values()}
    for name in ("event_timestamp", *sorted(candidates)):
        if name in columns:
            return name
    if len(timestamp_typed) == 1:
        return str(timestamp_typed[0])
    raise PointInTimeError(
        "Cannot tell which column of entity_df holds the event time.",
        fix="pass timestamp_column='...' (the time each entity row was observed).",
    )


def entity_output_names(
    selected: Selected, entity_columns: Collection[str]
) -> dict[tuple[str, str], str]:
    """`output_names`, with `group__feature` where a name is already an entity column."""
    names = output_names(selected)
    for (group, feature), name in list(names.items()):
        if name in entity_columns:
            names[(group, feature)] = f"{group}__{feature}"
    return names


def shared_entity_keys(selected: Selected) -> tuple[str, ...]:
    """The entity keys every selected group shares, or an error naming the mismatch."""
    keys = next(iter(selected.values()))[0].entity_keys
    for schema, _ in selected.values():
        if schema.entity_keys != keys:
            raise SchemaValidationError(
                f"get_features mixes groups with different entity keys "
                f"({list(keys)} vs {list(schema.entity_keys)}).",
                fix="read each group separately, or use get_historical_features with an "
                "entity DataFrame holding every key.",
            )
    return keys


def requested_output_names(
    expanded: ExpandedRequest, taken: Sequence[str] = ()
) -> dict[tuple[str, str], str]:
    """Output column per requested (group, name): the name, or `group__name` when two requested
    outputs share it or it clashes with a column in `taken`."""
    counts: dict[str, int] = {}
    for _, name in expanded.requested:
        counts[name] = counts.get(name, 0) + 1
    out = {}
    for group, name in expanded.requested:
        clash = counts[name] > 1 or name in taken
        out[(group, name)] = f"{group}__{name}" if clash else name
    return out
