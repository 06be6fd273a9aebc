"""The checks of names and form: a declaration's keys and form (YAML mappings of groups,
features, rules, ...) and the identifiers it declares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from featurelake.errors import SchemaValidationError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INGESTED_AT = "_ingested_at"
RESERVED_COLUMNS = frozenset({INGESTED_AT})


def check_identifier(name: object, what: str) -> str:
    """Return `name` if it is a plain identifier, else raise an error naming `what`."""
    if not isinstance(name, str) or not name:
        raise SchemaValidationError(
            f"The {what} name is empty.", fix=f"give the {what} a name such as 'customer_age'."
        )
    if not IDENTIFIER.match(name):
        raise SchemaValidationError(
            f"The {what} name '{name}' is not a valid identifier.",
            fix="use letters, digits and underscores, starting with a letter or underscore.",
        )
    if name in RESERVED_COLUMNS:
        raise SchemaValidationError(
            f"The {what} name '{name}' is reserved by featurelake.",
            fix="choose another name.",
        )
    return name


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


def check_mapping(data: Any, what: str, fix: str, *, got: str | None = None) -> None:
    """Raise a SchemaValidationError "`what` must be a mapping, got ..." unless `data` is one
    (`got` names what was given; default: its repr)."""
    if not isinstance(data, Mapping):
        raise SchemaValidationError(
            f"{what} must be a mapping, got {repr(data) if got is None else got}.", fix=fix
        )
