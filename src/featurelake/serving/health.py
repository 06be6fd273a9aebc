"""`HealthResult`: what `FeatureStore.health_check()` returns."""

from __future__ import annotations

from typing import Any


class HealthResult(dict[str, Any]):
    """A health check's details (a dict, indexed as before) that is falsy when unhealthy, so
    `if store.health_check():` means what it says."""

    def __bool__(self) -> bool:
        return bool(self.get("healthy", False))

    @property
    def healthy(self) -> bool:
        """True when every checked part is healthy."""
        return bool(self)
