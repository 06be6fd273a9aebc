"""A read request resolved once into a plan that every engine runs.

A `ReadRequest` is a read as the caller asked for it, built once by the store (`FeatureStore`)
and handed down to every part that runs it. `resolve_read(...)` parses its feature references
once: composites are expanded into the stored features they need, references are resolved to
registered group versions, and each stored feature gets its output column. The router
(`stores.hybrid`) then adds, per group, where its rows come from (`RoutingDecision`: Gold table
or virtual query, with the numbers behind it) and the engine of the whole read
(`EngineDecision`: Spark, DuckDB or the online store). Spark (`engines.spark`), DuckDB
(`engines.duckdb`) and the online store run the finished plan without parsing anything again;
`explain` returns it.

A plan is also a read-only mapping of group name to its `RoutingDecision`, so
`store.explain("orders.*")["orders"].reason` reads one group's decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from featurelake.plan.engine_choice import EngineDecision
from featurelake.plan.refs import Selected, output_names, resolve_refs
from featurelake.plan.routing import RoutingDecision, Strategy
from featurelake.plan.rules import check_fill
from featurelake.registry import Registry
from featurelake.schema import FeatureGroupSchema, format_duration, parse_duration
from featurelake.schema.composites import ExpandedRequest, expand_composites


class ReadKind(StrEnum):
    """What a read asks for."""

    LATEST = "latest"
    """The latest value per entity (as of a time, when given)."""
    POINT_IN_TIME = "point_in_time"
    """Each entity row's values as of its own time (training sets)."""


@dataclass(frozen=True)
class ReadRequest:
    """A read as the caller asked for it (after the entity ids were normalized)."""

    kind: ReadKind
    refs: tuple[str, ...]
    point_in_time: datetime | None = None
    timestamp_column: str | None = None
    ttl: timedelta | None = None
    """A ttl for every group of the read (else each group's own)."""
    fill: str = "none"
    as_of_version: int | None = None
    """A latest read of the Gold tables at this Delta version (time travel)."""
    as_of_timestamp: datetime | str | None = None
    """A latest read of the Gold tables at the Delta version current at this time."""

    @classmethod
    def latest(
        cls,
        feature_refs: str | Sequence[str],
        point_in_time: datetime | None = None,
        *,
        as_of_version: int | None = None,
        as_of_timestamp: datetime | str | None = None,
    ) -> ReadRequest:
        """The latest value per entity, as of `point_in_time` (optionally of the Gold tables
        at a past Delta version or time)."""
        return cls(
            ReadKind.LATEST,
            _refs(feature_refs),
            point_in_time,
            as_of_version=as_of_version,
            as_of_timestamp=as_of_timestamp,
        )

    @classmethod
    def historical(
        cls,
        feature_refs: str | Sequence[str],
        ttl: timedelta | str | None = None,
        timestamp_column: str | None = None,
        fill: str = "none",
    ) -> ReadRequest:
        """Each entity row's values as of its own time (a training set): `ttl` (a duration or
        text such as "3d") replaces every group's own; an unknown `fill` raises here."""
        check_fill(fill)
        ttl_override = parse_duration(ttl, what="ttl")
        return cls(
            ReadKind.POINT_IN_TIME, _refs(feature_refs), None, timestamp_column, ttl_override, fill
        )

    @property
    def pinned(self) -> bool:
        """Whether the read pins the Gold tables' Delta version (`as_of_version` / `_timestamp`)."""
        return self.as_of_version is not None or self.as_of_timestamp is not None


@dataclass(frozen=True)
class ReadPlan(Mapping[str, RoutingDecision]):
    """A resolved read: groups and versions, features and output columns, composites, and the
    routing and engine decisions with their numbers."""

    request: ReadRequest
    expanded: ExpandedRequest
    """The requested outputs, with composites expanded to their stored inputs."""
    selected: Selected
    """Group -> (schema at its resolved version, stored features to read)."""
    decisions: Mapping[str, RoutingDecision] = field(default_factory=dict)
    engine: EngineDecision | None = None

    # -- the mapping of group -> routing decision -------------------------------------------------

    def __getitem__(self, group: str) -> RoutingDecision:
        return self.decisions[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    # -- what engines read ----------------------------------------------------------------------

    @property
    def schemas(self) -> tuple[FeatureGroupSchema, ...]:
        """The groups of the read, at their resolved versions."""
        return tuple(schema for schema, _ in self.selected.values())

    @property
    def stored_refs(self) -> tuple[str, ...]:
        """`group@version.feature` of every stored feature the read needs (composite inputs
        included); resolving these again gives the same groups and versions."""
        return tuple(
            f"{schema.name}@{schema.version}.{feature}"
            for schema, features in self.selected.values()
            for feature in features
        )

    @property
    def virtual_groups(self) -> frozenset[str]:
        """The groups whose rows come from their virtual query."""
        return frozenset(
            name for name, d in self.decisions.items() if d.strategy is Strategy.VIRTUAL
        )

    @property
    def output_columns(self) -> dict[str, str]:
        """`group.feature` -> output column of each stored feature (a feature name, or
        `group__feature` where two groups share it)."""
        return {
            f"{group}.{feature}": name
            for (group, feature), name in output_names(self.selected).items()
        }

    def with_decisions(
        self, decisions: Mapping[str, RoutingDecision], engine: EngineDecision | None
    ) -> ReadPlan:
        """The plan with the router's decisions; each decision names the read's engine."""
        if engine is not None:
            decisions = {
                name: dataclasses.replace(
                    d, engine=engine.engine.value, engine_reason=engine.reason
                )
                for name, d in decisions.items()
            }
        return dataclasses.replace(self, decisions=dict(decisions), engine=engine)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (what `featurelake explain` and the server print)."""
        request = self.request
        return {
            "kind": request.kind.value,
            "refs": list(request.refs),
            "point_in_time": request.point_in_time.isoformat() if request.point_in_time else None,
            "timestamp_column": request.timestamp_column,
            "ttl": format_duration(request.ttl) if request.ttl else None,
            "fill": request.fill,
            "groups": [
                {"group": schema.name, "version": schema.version, "features": list(features)}
                for schema, features in self.selected.values()
            ],
            "composites": [f"{c.group.name}.{c.composite.name}" for c in self.expanded.composites],
            "output_columns": self.output_columns,
            "engine": self.engine.engine.value if self.engine else None,
            "engine_reason": self.engine.reason if self.engine else None,
            "decisions": {name: d.to_dict() for name, d in self.decisions.items()},
        }


def resolve_read(registry: Registry, request: ReadRequest) -> ReadPlan:
    """The plan of a read before routing: the references parsed once, composites expanded,
    every group resolved to its version (unknown groups or features raise here)."""
    expanded = expand_composites(request.refs, registry.get_group)
    selected = resolve_refs(registry, list(expanded.refs))
    return ReadPlan(request=request, expanded=expanded, selected=selected)


def _refs(feature_refs: str | Sequence[str]) -> tuple[str, ...]:
    return tuple([feature_refs] if isinstance(feature_refs, str) else feature_refs)


__all__ = ["ReadKind", "ReadPlan", "ReadRequest", "resolve_read"]
