"""The HTTP feature server (FastAPI): routes, API keys and ACL, audit log, staging, metrics.

Needs the `server` extra (`pip install 'featurelake[server]'`). `create_app(store)` builds the
app; `featurelake serve` runs it with uvicorn; `featurelake api-key ...` manages keys.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "featurelake.server.app",
    "ServerSettings": "featurelake.server.settings",
    "ApiKeyStore": "featurelake.server.auth",
    "ApiKey": "featurelake.server.auth",
    "Role": "featurelake.server.auth",
    "AuditLog": "featurelake.server.audit",
    "StagingTable": "featurelake.server.staging",
    "compact_staging": "featurelake.server.staging",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'featurelake.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
