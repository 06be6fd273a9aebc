"""What a caller may learn: groups resolved through the key's rights, and errors without secrets.

A group the key has no right on answers exactly like a group that does not exist (404
`group_not_found`, the same message), so a 404 versus a 403 tells a stranger nothing. Not-found
errors never list the names that do exist, and no message carries the store's storage path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from featurelake.errors import (
    FeatureGroupNotFoundError,
    FeatureNotFoundError,
    FeatureStoreError,
    SchemaValidationError,
)
from featurelake.server.auth import Access, ApiKey
from featurelake.server.errors import NotFoundError

if TYPE_CHECKING:
    from featurelake.config import FeatureStoreConfig
    from featurelake.registry import Registry
    from featurelake.schema import FeatureGroupSchema

STORE = "<store>"
LIST_FIX = "list the groups this key may read with GET /v1/features."


def hidden_group(text: str) -> NotFoundError:
    """The one answer for a group that is unknown or outside the key's rights."""
    return NotFoundError(
        f"There is no feature group '{text}' this API key may use.",
        code="group_not_found",
        fix=LIST_FIX,
    )


def hidden_feature(group: str, feature: str) -> NotFoundError:
    """The one answer for a feature of a readable group that is unknown or outside the key's
    read rights."""
    return NotFoundError(
        f"Group '{group}' has no feature '{feature}' this key may read.",
        code="feature_not_found",
        fix=f"GET /v1/features/{group} lists its features.",
    )


def hidden_service(name: str) -> NotFoundError:
    """The one answer for a service that is unknown or whose features the key may not read."""
    return NotFoundError(
        f"There is no feature service '{name}' this API key may read.",
        code="feature_not_found",
        fix="check the service name, or ask an admin for a key that may read its features.",
    )


def may_use(key: ApiKey, schema: FeatureGroupSchema) -> bool:
    """True when the key may read or write at least one feature of the group."""
    return any(
        key.can(Access.READ, schema.name, f) or key.can(Access.WRITE, schema.name, f)
        for f in schema.feature_names
    )


def visible_group(registry: Registry, key: ApiKey, text: str) -> FeatureGroupSchema:
    """The group `text` (`group` or `group@VERSION`) when the key has a right on it; else the
    same 404 whether it exists or not."""
    name, _, version = text.partition("@")
    if version and not version.isdigit():
        raise SchemaValidationError(
            f"'{text}' is not a group name.", fix="use 'group' or 'group@VERSION'."
        )
    try:
        latest = registry.get_group(name)
    except FeatureGroupNotFoundError:
        raise hidden_group(text) from None
    if not may_use(key, latest):
        raise hidden_group(text)
    if not version:
        return latest
    try:
        return registry.get_group(name, int(version))
    except FeatureGroupNotFoundError:
        raise NotFoundError(
            f"Feature group '{name}' has no version {version}.",
            code="group_not_found",
            fix=f"use one of the versions {registry.versions(name)}.",
        ) from None


def public_error(error: FeatureStoreError, config: FeatureStoreConfig) -> tuple[str, str | None]:
    """(message, fix) of an error as a caller sees it: not-found errors name only what was
    asked for, and the storage path is replaced by `<store>` everywhere."""
    if isinstance(error, FeatureNotFoundError) and not isinstance(error, NotFoundError):
        asked = _asked(error.details)
        message = (
            f"'{asked}' is not a feature group, feature or service this API key may use."
            if asked
            else "A feature reference is not valid."
        )
        return scrub(message, config), LIST_FIX
    return scrub(error.message, config), scrub(error.fix, config) if error.fix else None


def _asked(details: dict[str, Any]) -> str | None:
    group, feature = details.get("group"), details.get("feature")
    if group and feature:
        return f"{group}.{feature}"
    for name in ("ref", "service", "group", "feature"):
        if details.get(name):
            return str(details[name])
    return None


def scrub(text: str, config: FeatureStoreConfig) -> str:
    """`text` with every spelling of the storage path replaced by `<store>`."""
    root = config.storage_path.rstrip("/")
    spellings = {root, root.removeprefix("file://").removeprefix("file:")}
    local = next(iter(sorted(spellings, key=len)))
    if "://" not in local:
        spellings |= {os.path.abspath(local), os.path.realpath(local)}
    for spelling in sorted((s for s in spellings if len(s) > 1), key=len, reverse=True):
        text = text.replace(spelling, STORE)
    return text
