"""Feature references: `group.feature`, `group.*`, and `group@2.feature` (pinned version).

`group.feature.v2` (the versioned form other stores write) is read as `group@2.feature`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from featurelake.errors import FeatureNotFoundError, SchemaValidationError

_REF = re.compile(
    r"^(?P<group>[A-Za-z_][A-Za-z0-9_]*)(?:@(?P<version>\d+))?\.(?P<feature>\*|[A-Za-z_][A-Za-z0-9_]*)$"
)


_SUFFIXED = re.compile(
    r"^(?P<group>[A-Za-z_][A-Za-z0-9_]*)(?:@(?P<pinned>\d+))?\.(?P<feature>\*|[A-Za-z_][A-Za-z0-9_]*)"
    r"\.v(?P<version>\d+)$"
)


@dataclass(frozen=True)
class FeatureRef:
    """One parsed feature reference; `feature == "*"` means every feature of the group."""

    group: str
    feature: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str | FeatureRef) -> FeatureRef:
        if isinstance(text, FeatureRef):
            return text
        match = _REF.match(str(text).strip())
        if not match:
            suffixed = _SUFFIXED.match(str(text).strip())
            if suffixed:
                return cls._suffixed(str(text), suffixed)
            raise FeatureNotFoundError(
                f"'{text}' is not a feature reference.",
                fix="write 'group.feature', 'group.*' for a whole group, or 'group@2.feature' "
                "to pin version 2.",
                ref=str(text),
            )
        version = match.group("version")
        return cls(match.group("group"), match.group("feature"), int(version) if version else None)

    @classmethod
    def _suffixed(cls, text: str, match: re.Match[str]) -> FeatureRef:
        group, feature, version = match.group("group", "feature", "version")
        pinned = match.group("pinned")
        if pinned is not None and pinned != version:
            raise SchemaValidationError(
                f"'{text}' pins group '{group}' at two versions ({pinned} and {version}).",
                fix=f"write '{group}@{version}.{feature}' (featurelake's form).",
                ref=text,
            )
        return cls(group, feature, int(version))

    @property
    def is_wildcard(self) -> bool:
        return self.feature == "*"

    def __str__(self) -> str:
        pinned = f"@{self.version}" if self.version is not None else ""
        return f"{self.group}{pinned}.{self.feature}"


def parse_refs(refs: str | Iterable[str | FeatureRef]) -> list[FeatureRef]:
    """Parse one reference or many; an empty list is an error."""
    items = [refs] if isinstance(refs, str) else list(refs)
    if not items:
        raise FeatureNotFoundError(
            "No feature references were given.",
            fix="pass at least one reference such as 'customer_profile.age' or 'group.*'.",
        )
    return [FeatureRef.parse(item) for item in items]


def two_versions_error(group: str, first: int, second: int) -> SchemaValidationError:
    """The error for one request naming a group at two versions."""
    return SchemaValidationError(
        f"Group '{group}' is referenced at two versions ({first} and {second}).",
        fix=f"reference one version of '{group}' per request (e.g. '{group}@{second}.*' "
        "everywhere, or no version for the latest).",
        group=group,
    )
