"""Where each group of a read comes from (its Gold table or its virtual query), as data.

The router (`stores.hybrid`) makes the decision; the read plan carries it, with the numbers
behind it, to the engine that runs the read and to `explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from featurelake.errors import FeatureStoreError
from featurelake.plan.engine_choice import Engine
from featurelake.plan.estimates import Estimate
from featurelake.registry import group_key
from featurelake.schema import FeatureGroupSchema, format_duration


class Strategy(StrEnum):
    """Where a group's rows come from for one request."""

    MATERIALIZED = "materialized"
    VIRTUAL = "virtual"


StrategyArg = str | Strategy | Mapping[str, str | Strategy] | None


@dataclass(frozen=True)
class RoutingDecision:
    """How one group of a request is read, and the numbers behind the choice."""

    group: str
    version: int
    strategy: Strategy
    reason: str
    threshold: int
    estimated_rows: int | None
    """Rows the read is estimated to touch (the figure compared with the threshold)."""
    estimate_source: str
    """`sources` (the virtual query's tables), `gold` (the Gold table) or `none`."""
    files_total: int
    files_after_pruning: int
    gold_exists: bool
    virtual_defined: bool
    fresh: bool | None
    last_updated: datetime | None
    freshness: timedelta | None
    gold_estimate: Estimate | None = None
    virtual_estimate: Estimate | None = None
    requested: Strategy | None = None
    auto_materialize: bool = False
    """True when this read materializes the group first (or would, in `explain`)."""
    gold_write_version: int | None = None
    engine: str = Engine.SPARK.value
    """The engine of the request (`explain` and the pandas reads; Spark DataFrame reads are
    always `spark`)."""
    engine_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "version": self.version,
            "strategy": self.strategy.value,
            "reason": self.reason,
            "threshold": self.threshold,
            "estimated_rows": self.estimated_rows,
            "estimate_source": self.estimate_source,
            "files_total": self.files_total,
            "files_after_pruning": self.files_after_pruning,
            "gold_exists": self.gold_exists,
            "virtual_defined": self.virtual_defined,
            "fresh": self.fresh,
            "last_updated": self.last_updated.isoformat() if self.last_updated else None,
            "freshness": format_duration(self.freshness) if self.freshness else None,
            "gold_estimate": self.gold_estimate.to_dict() if self.gold_estimate else None,
            "virtual_estimate": (
                self.virtual_estimate.to_dict() if self.virtual_estimate else None
            ),
            "requested": self.requested.value if self.requested else None,
            "auto_materialize": self.auto_materialize,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
        }


def requested_strategy(strategy: StrategyArg, schema: FeatureGroupSchema) -> Strategy | None:
    """The strategy asked for this group (a single value, or a mapping by group name)."""
    if strategy is None:
        return None
    if isinstance(strategy, Mapping):
        value = strategy.get(schema.name, strategy.get(group_key(schema.name, schema.version)))
        if value is None:
            return None
    else:
        value = strategy
    text = str(value).lower()
    if text == "auto":
        return None
    try:
        return Strategy(text)
    except ValueError:
        raise FeatureStoreError(
            f"strategy={value!r} is not a read strategy.",
            fix="pass 'materialized', 'virtual' or 'auto' (or a mapping of group name to one "
            "of them).",
        ) from None
