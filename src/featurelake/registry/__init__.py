"""The metadata registry: groups, versions, lineage, write history, stored in Delta."""

from featurelake.registry.locations import (
    TableLocation,
    gold_location,
    quote_identifier,
    registry_location,
    side_location,
)
from featurelake.registry.registry import (
    GroupState,
    Lineage,
    RegistrationResult,
    Registry,
    group_key,
)

__all__ = [
    "GroupState",
    "Lineage",
    "RegistrationResult",
    "Registry",
    "TableLocation",
    "gold_location",
    "group_key",
    "quote_identifier",
    "registry_location",
    "side_location",
]
