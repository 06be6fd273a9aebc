"""What the server's routes share: the state object, the API prefix, JSON values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from featurelake.server.audit import AuditLog, UnauthenticatedThrottle
from featurelake.server.auth import ApiKeyStore
from featurelake.server.gold_mirror import GoldMirror
from featurelake.server.limits import KeyLimiter, OfflineGate, ServePool
from featurelake.server.metrics import ServerMetrics
from featurelake.server.rows import RowChecker
from featurelake.server.settings import ServerSettings
from featurelake.server.staging import StagingTable
from featurelake.serving import FeatureStore

if TYPE_CHECKING:
    from featurelake.schema import FeatureGroupSchema

API_PREFIX = "/v1"


@dataclass
class ServerState:
    """What the routes share: the store, keys, audit log, metrics, staging table, limits."""

    store: FeatureStore
    settings: ServerSettings
    keys: ApiKeyStore
    audit: AuditLog
    metrics: ServerMetrics
    staging: StagingTable
    key_limits: KeyLimiter
    offline: OfflineGate
    serving: ServePool
    unauthenticated: UnauthenticatedThrottle
    owns_store: bool = False
    mirror: GoldMirror | None = None
    _checkers: dict[str, RowChecker] = field(default_factory=dict)

    def checker(self, schema: FeatureGroupSchema) -> RowChecker:
        """The row checker of a schema (cached by fingerprint)."""
        key = f"{schema.name}@{schema.version}:{schema.fingerprint()}"
        checker = self._checkers.get(key)
        if checker is None:
            if len(self._checkers) > 256:
                self._checkers.clear()
            checker = self._checkers[key] = RowChecker(schema)
        return checker


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def jsonable(value: Any) -> Any:
    """Values for a JSON body (datetimes as ISO text, decimals as numbers)."""
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
