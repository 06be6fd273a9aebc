"""Composite features online: read their inputs, evaluate the compiled Python form per entity.

The same compiled expression gives the Spark column offline, so both sides compute a composite
alike (see `featurelake.schema.expressions`), missing inputs being nulls on both sides. A
composite's event time is the oldest event time of its inputs found (so its age is the age of
its stalest input); with no input found it counts as missing and takes its default, if any.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from featurelake.online.values import now_micros
from featurelake.online.vector import FeatureVector
from featurelake.schema.composites import ExpandedRequest


def compose_vectors(
    expanded: ExpandedRequest,
    read: Callable[[list[str]], list[FeatureVector]],
    defaults: Mapping[str, Any] | None,
) -> list[FeatureVector]:
    """Vectors of the requested outputs, from `read(stored_refs)` (no defaults applied there)."""
    stored = read(list(expanded.refs))
    names, index = output_layout(expanded)
    by_key = {(c.group.name, c.composite.name): c for c in expanded.composites}
    evaluators = {key: c.composite.compiled.evaluate for key, c in by_key.items()}
    fill = {index[k]: v for k, v in (defaults or {}).items() if k in index}
    now = now_micros()
    vectors = []
    for base in stored:
        values: list[Any] = []
        events: list[int | None] = []
        for group, name in expanded.requested:
            request = by_key.get((group, name))
            if request is None:
                value = base.feature(f"{group}.{name}")
                values.append(value.value)  # None, or 0 for a count without events
                events.append(_micros(value.event_time) if value.found else None)
                continue
            inputs = {ref: base.feature(f"{g}.{f}") for ref, (g, f) in request.inputs.items()}
            found = [v for v in inputs.values() if v.found]
            row = {ref: v.value for ref, v in inputs.items()}
            values.append(evaluators[(group, name)](row))
            times = [t for t in (_micros(v.event_time) for v in found) if t is not None]
            events.append(min(times) if times else None)
        for position, value in fill.items():
            if events[position] is None:
                values[position] = value
        vectors.append(FeatureVector(base.entity, names, index, values, events, now, base.source))
    return vectors


def output_layout(expanded: ExpandedRequest) -> tuple[tuple[str, ...], dict[str, int]]:
    """Output names and name -> position of a request with composites (as read plans do)."""
    counts: dict[str, int] = {}
    for _, name in expanded.requested:
        counts[name] = counts.get(name, 0) + 1
    versions = {c.group.name: c.group.version for c in expanded.composites}
    for ref in expanded.refs:
        group, _, rest = ref.partition("@")
        versions.setdefault(group, int(rest.split(".")[0]))
    names: list[str] = []
    index: dict[str, int] = {}
    for position, (group, name) in enumerate(expanded.requested):
        output = name if counts[name] == 1 else f"{group}__{name}"
        names.append(output)
        index[output] = position
        index[f"{group}.{name}"] = position
        index[f"{group}@{versions[group]}.{name}"] = position
    return tuple(names), index


def _micros(value: Any) -> int | None:
    from featurelake.online.values import to_micros

    return None if value is None else to_micros(value)
