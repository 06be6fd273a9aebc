"""Which engine answers a read: Spark, or DuckDB over the same Delta tables.

The choice is per request (every group of it runs on one engine). DuckDB serves when it is
installed, every group is one it can read (a Gold table at a local or `s3://` path that
delta-rs opens, or a virtual group defined in DuckDB SQL), and the rows the request touches,
estimated from Delta log statistics (`plan.estimates`, never a scan), are under
`duckdb_threshold_rows`. Otherwise Spark does; the decision says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from featurelake.errors import (
    DependencyNotInstalledError,
    FeatureStoreError,
    UnsupportedOperationError,
)


class Engine(StrEnum):
    """Engines that run reads."""

    SPARK = "spark"
    DUCKDB = "duckdb"
    ONLINE = "online"
    """The online store: latest values of given entities, in the store's `online` mode."""


EngineArg = str | Engine | None


def requested_engine(value: EngineArg) -> Engine | None:
    """The engine asked for (None for `auto`), or a FeatureStoreError naming the choices."""
    if value is None or str(value).lower() == "auto":
        return None
    try:
        return Engine(str(value).lower())
    except ValueError:
        raise FeatureStoreError(
            f"engine={value!r} is not a read engine.",
            fix="pass 'auto' (the router chooses), 'spark', 'duckdb' or 'online'.",
        ) from None


@dataclass(frozen=True)
class GroupFacts:
    """What the engine choice needs to know about one group of a request."""

    group: str
    rows: int | None
    """Rows DuckDB would read for it (None: unknown)."""
    blocker: str | None = None
    """Why DuckDB cannot read it (None: it can)."""


@dataclass(frozen=True)
class EngineDecision:
    """The engine of one request and why."""

    engine: Engine
    reason: str
    estimated_rows: int | None
    threshold: int
    requested: Engine | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine.value,
            "reason": self.reason,
            "estimated_rows": self.estimated_rows,
            "threshold": self.threshold,
            "requested": self.requested.value if self.requested else None,
        }


def choose_engine(
    requested: Engine | None,
    groups: Sequence[GroupFacts],
    threshold: int,
    *,
    duckdb_available: bool,
) -> EngineDecision:
    """Spark or DuckDB for a request over `groups` (see the module docstring).

    Asking for `duckdb` when it cannot serve raises: DependencyNotInstalledError without the
    package, UnsupportedOperationError naming the group it cannot read.
    """
    known = all(g.rows is not None for g in groups)
    rows = sum(g.rows or 0 for g in groups) if known else None

    def decision(engine: Engine, reason: str) -> EngineDecision:
        return EngineDecision(engine, reason, rows, threshold, requested)

    blocked = [g for g in groups if g.blocker]
    if requested is Engine.ONLINE:
        raise UnsupportedOperationError(
            "engine='online' serves latest values of given entities only, and this read is "
            "not one (it has no entity ids, a point in time, a strategy, or entity rows).",
            fix="use engine='spark', 'duckdb' or 'auto' for this read, or "
            "store.get_online_features(...) for online values.",
        )
    if requested is Engine.SPARK:
        return decision(Engine.SPARK, "engine='spark' was requested")
    if requested is Engine.DUCKDB:
        require_duckdb()
        if blocked:
            raise UnsupportedOperationError(
                f"engine='duckdb' was requested, but DuckDB cannot read group "
                f"'{blocked[0].group}': {blocked[0].blocker}.",
                fix="use engine='spark' (or 'auto') for this request.",
                group=blocked[0].group,
            )
        return decision(Engine.DUCKDB, "engine='duckdb' was requested")
    if not duckdb_available:
        return decision(Engine.SPARK, "duckdb is not installed (pip install 'featurelake[duckdb]')")
    if blocked:
        return decision(
            Engine.SPARK, f"DuckDB cannot read group '{blocked[0].group}': {blocked[0].blocker}"
        )
    if rows is None:
        unknown = next(g.group for g in groups if g.rows is None)
        return decision(
            Engine.SPARK, f"the rows of group '{unknown}' are unknown (no Delta statistics)"
        )
    if rows < threshold:
        return decision(
            Engine.DUCKDB, f"{rows:,} estimated rows < duckdb_threshold_rows {threshold:,}"
        )
    return decision(Engine.SPARK, f"{rows:,} estimated rows >= duckdb_threshold_rows {threshold:,}")


__all__ = [
    "Engine",
    "EngineArg",
    "EngineDecision",
    "GroupFacts",
    "choose_engine",
    "requested_engine",
]


def require_duckdb() -> Any:
    """The `duckdb` module, or DependencyNotInstalledError with the pip command."""
    try:
        import duckdb
    except ImportError:
        raise DependencyNotInstalledError(
            "duckdb", "duckdb", "The DuckDB engine (engine='duckdb')"
        ) from None
    return duckdb


def duckdb_installed() -> bool:
    """True when the `duckdb` package can be imported."""
    try:
        require_duckdb()
    except DependencyNotInstalledError:
        return False
    return True
