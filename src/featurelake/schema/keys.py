"""The one check of a declaration's keys (YAML mappings of groups, features, rules, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from featurelake.errors import SchemaValidationError


def check_keys(
    data: Mapping[str, Any], allowed: Iterable[str], what: str, *, shown: Iterable[str] = ()
) -> None:
    """Raise a SchemaValidationError naming the keys of `data` outside `allowed` (`what` names
    the declaration, e.g. "Feature 'age'"; `shown` lists the keys to suggest, default all)."""
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SchemaValidationError(
            f"{what} has unknown key(s): {', '.join(unknown)}.",
            fix=f"use only: {', '.join(sorted(set(shown) or allowed))}.",
        )
