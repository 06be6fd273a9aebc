"""Call shapes of other feature stores, read into featurelake's own.

Keyword aliases (`feature_names=` for `feature_refs`, `feature_group=` / `data=` for a write),
bare feature names (`"age"`) resolved to `group.feature` when exactly one registered group has
that feature, and the time span of a `backfill=True` write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurelake.errors import AmbiguousFeatureError, ArgumentConflictError, FeatureNotFoundError
from featurelake.schema import FeatureGroupSchema

if TYPE_CHECKING:
    from featurelake.registry import Registry

_MISSING: Any = object()


def alias(
    ours: Any, seed: Any, *, ours_name: str, seed_name: str, call: str, required: bool = True
) -> Any:
    """The one value given as `ours_name` or as its alias `seed_name` (never both)."""
    if ours is not None and seed is not None:
        raise ArgumentConflictError(
            f"{call}() was given both {ours_name}= and {seed_name}= (the same argument).",
            fix=f"pass it once, as {ours_name}=.",
            argument=ours_name,
        )
    value = ours if ours is not None else seed
    if value is None and required:
        raise ArgumentConflictError(
            f"{call}() needs {ours_name}= (or {seed_name}=).",
            fix=f"pass {ours_name}=.",
            argument=ours_name,
        )
    return value


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
        for name in (*schema.feature_names, *_composite_names(schema)):
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


def _composite_names(schema: FeatureGroupSchema) -> list[str]:
    return [c.name for c in schema.composites]


def time_span(df: Any, timestamp_key: str) -> tuple[datetime, datetime]:
    """`[earliest, latest + 1us)` of a frame's event times: the range a `backfill=True` write
    replaces."""
    if type(df).__module__.startswith("pyspark"):
        from pyspark.sql import functions as F

        row = df.agg(F.min(timestamp_key), F.max(timestamp_key)).collect()[0]
        low, high = row[0], row[1]
    else:
        column = df[timestamp_key]
        low, high = column.min(), column.max()
    if low is None or high is None or low != low:
        raise ArgumentConflictError(
            f"A backfill=True write needs event times in '{timestamp_key}', and the data has none.",
            fix="pass rows with event times, or call store.backfill(group, df, start, end).",
        )
    import pandas as pd

    from featurelake.times import utc_naive

    start = utc_naive(pd.Timestamp(low).to_pydatetime())
    latest = utc_naive(pd.Timestamp(high).to_pydatetime())
    return start, latest + timedelta(microseconds=1)
