"""`create_app`: the FastAPI application of the feature server.

The app serves one store through the `FeatureStore` facade: online reads come from its online
store, registrations and Gold reads from its offline store (Spark is started on the first
request that needs it, never at startup), writes go to the staging table and the online
store. An in-process (memory) online store is filled from the Gold tables at startup and kept
fresh (see `gold_mirror.py`). Every route except `/v1/health`, `/v1/metrics` and the OpenAPI
document needs an API key; the feature catalog's pages under `/ui` (`server.ui`) need a
signed-in session. Errors are JSON `{"error": {"code", "message", "fix", "request_id"}}` (see
`errors.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from featurelake.config import FeatureStoreConfig
from featurelake.errors import FeatureStoreError
from featurelake.registry import Registry
from featurelake.server.access import public_error
from featurelake.server.audit import AuditLog, UnauthenticatedThrottle
from featurelake.server.auth import ApiKeyStore
from featurelake.server.errors import RetryLaterError, error_body, error_status
from featurelake.server.gold_mirror import GoldMirror
from featurelake.server.limits import KeyLimiter, OfflineGate, ServePool
from featurelake.server.metrics import ServerMetrics
from featurelake.server.middleware import BodyTooLargeError, RequestMiddleware
from featurelake.server.settings import ServerSettings
from featurelake.server.staging import StagingTable
from featurelake.server.state import API_PREFIX, ServerState, server_state
from featurelake.serving import FeatureStore

if TYPE_CHECKING:
    pass

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    429: "too_many_requests",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def create_app(
    store: FeatureStore | FeatureStoreConfig, settings: ServerSettings | None = None
) -> FastAPI:
    """The feature server for `store` (a `FeatureStore`, or a config to build one from).

    Starting the app starts no Spark session; pass a `FeatureStore` built with a session to
    share one.
    """
    from featurelake import __version__
    from featurelake.server.routes import router
    from featurelake.server.ui.routes import install as install_catalog
    from featurelake.server.values import router as values_router

    settings = settings or ServerSettings()
    owns_store = isinstance(store, FeatureStoreConfig)
    features = FeatureStore(store) if isinstance(store, FeatureStoreConfig) else store
    config = features.config
    key_registry = Registry(config.replace(metadata_cache_ttl_seconds=settings.key_cache_seconds))
    state = ServerState(
        store=features,
        settings=settings,
        keys=ApiKeyStore(key_registry),
        audit=AuditLog.for_store(config, flush_seconds=settings.audit_flush_seconds),
        metrics=ServerMetrics(),
        staging=StagingTable.for_store(config),
        key_limits=KeyLimiter(settings.max_concurrent_per_key, settings.retry_after_seconds),
        offline=OfflineGate(
            settings.offline_threads,
            settings.offline_queue,
            settings.offline_timeout_seconds,
            settings.retry_after_seconds,
        ),
        serving=ServePool(settings.serve_threads),
        unauthenticated=UnauthenticatedThrottle(
            settings.unauthenticated_audit_rows, settings.unauthenticated_audit_window_seconds
        ),
        owns_store=owns_store,
        mirror=(
            GoldMirror(features, settings.online_refresh_seconds)
            if GoldMirror.needed(features)
            else None
        ),
    )
    state.audit.pending = lambda final: state.unauthenticated.summaries(
        time.monotonic(), final=final
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.audit.start()
        if state.mirror is not None:  # an in-process store: filled from Gold before serving
            state.mirror.refresh()
        try:
            yield
        finally:
            state.serving.close()
            state.offline.close()
            state.audit.close()
            if state.owns_store:
                state.store.close()

    app = FastAPI(
        title="featurelake feature server",
        version=__version__,
        description=(
            "Features of a featurelake store over HTTP: register and describe groups, write "
            "records, serve online vectors and historical aggregations. Send an API key in "
            "the `X-API-Key` header (or `Authorization: Bearer KEY`). Errors are JSON with a "
            "stable `code`."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = state
    app.include_router(router)
    app.include_router(values_router)
    install_catalog(app)
    _install_error_handlers(app)
    app.add_middleware(RequestMiddleware, server=state)
    return app


def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    fix: str | None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request.state.error_code = code
    request.state.error_message = message
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        status_code=status, content=error_body(code, message, fix, request_id), headers=headers
    )


def _too_large(request: Request) -> JSONResponse | None:
    limit = getattr(request.state, "body_too_large", None)
    if limit is None:
        return None
    return _respond(
        request,
        413,
        "body_too_large",
        f"The request body is larger than the limit of {limit} bytes.",
        "send smaller requests (split write batches).",
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FeatureStoreError)
    async def feature_store_error(request: Request, error: FeatureStoreError) -> JSONResponse:
        status, code = error_status(error)
        if status >= 500:
            logger.warning("{} {}: {}", request.method, request.url.path, error)
        headers = None
        if isinstance(error, RetryLaterError):
            headers = {"Retry-After": str(max(1, round(error.retry_after)))}
        message, fix = public_error(error, server_state(request).store.config)
        return _respond(request, status, code, message, fix, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        too_large = _too_large(request)
        if too_large is not None:
            return too_large
        problems = []
        for item in error.errors()[:10]:
            where = ".".join(str(part) for part in item.get("loc", ()))
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return _respond(
            request,
            422,
            "invalid_request",
            "The request is not valid: " + "; ".join(problems),
            f"see the request schema in {API_PREFIX}/openapi.json ({API_PREFIX}/docs).",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        too_large = _too_large(request)
        if too_large is not None:
            return too_large
        code = HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        message = str(error.detail) if error.detail else code.replace("_", " ")
        fix = (
            f"see the routes in {API_PREFIX}/docs."
            if error.status_code in (404, 405)
            else "correct the request."
        )
        return _respond(request, error.status_code, code, message, fix)

    @app.exception_handler(BodyTooLargeError)
    async def body_too_large(request: Request, error: BodyTooLargeError) -> JSONResponse:
        response = _too_large(request)
        assert response is not None
        return response
