"""The ASGI middleware around every request: id, body size limit, metrics, audit of denials.

Pure ASGI (no per-request task or body copy). It gives each request an id (`X-Request-ID`),
answers 413 before parsing when `Content-Length` is over the limit (and stops a chunked body
that grows past it), times the request into the metrics by route template, and queues an
audit event for every request a route marked as audited (writes, registrations) and for every
request that was denied (401, 403).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from featurelake.server.audit import AuditEvent
from featurelake.server.errors import error_body

if TYPE_CHECKING:
    from featurelake.server.state import ServerState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DENIED = (401, 403)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The metrics label of an HTTP method: one of METHODS, else `OTHER` (a fixed set)."""
    return method if method in METHODS else "OTHER"


class BodyTooLargeError(Exception):
    """A chunked request body grew past the limit (answered as 413)."""


class RequestMiddleware:
    def __init__(self, app: ASGIApp, server: ServerState) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        limit = self.server.settings.max_body_bytes
        status = 500
        started_response = False
        header_id = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started_response = True
                message["headers"] = [*message.get("headers", []), header_id]
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            state["error_code"] = "body_too_large"
            await _send_json(
                send_with_id,
                413,
                error_body(
                    "body_too_large",
                    f"The request body has {declared} bytes; the limit is {limit}.",
                    "send smaller requests (split write batches).",
                    request_id,
                ),
            )
        else:
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        state["body_too_large"] = limit
                        raise BodyTooLargeError(limit)
                return message

            try:
                await self.app(scope, limited_receive, send_with_id)
            except Exception as error:  # never a stack trace to the client
                if started_response:
                    raise
                await self._fail(send_with_id, state, error, scope)
            finally:
                slot = state.pop("key_slot", None)
                if slot is not None:
                    self.server.key_limits.release(slot)
        self._after(scope, state, status, time.perf_counter() - started)

    async def _fail(
        self, send: Send, state: dict[str, Any], error: Exception, scope: Scope
    ) -> None:
        request_id = state.get("request_id")
        limit = state.get("body_too_large")
        if limit is not None:
            state["error_code"] = "body_too_large"
            body = error_body(
                "body_too_large",
                f"The request body is larger than the limit of {limit} bytes.",
                "send smaller requests (split write batches).",
                request_id,
            )
            await _send_json(send, 413, body)
            return
        logger.opt(exception=error).error(
            "{} {} failed (request {})", scope.get("method"), scope.get("path"), request_id
        )
        state["error_code"] = "internal_error"
        state["error_message"] = f"{type(error).__name__}: {error}"[:500]
        body = error_body(
            "internal_error",
            "The server failed to answer this request.",
            f"retry later; the server log has the cause under request id {request_id}.",
            request_id,
        )
        await _send_json(send, 500, body)

    def _after(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        metrics = self.server.metrics
        metrics.observe(method_label(scope.get("method", "")), route, status, seconds)
        code = state.get("error_code")
        if status >= 400 and code:
            metrics.error(route, code)
        audit = state.get("audit")
        if audit is None and status not in DENIED:
            return
        action, resource = audit if audit is not None else ("request", "")
        key = state.get("principal")
        client = scope.get("client")
        address = client[0] if client else None
        if status == 401 and not self.server.unauthenticated.admit(address, time.monotonic()):
            return  # counted in the client's summary row instead
        result = (
            "ok"
            if status < 400
            else "denied"
            if status in DENIED
            else "rejected"
            if status < 500
            else "failed"
        )
        self.server.audit.record(
            AuditEvent(
                action=action,
                result=result,
                status=status,
                method=scope.get("method", "")[:16],
                path=scope.get("path", ""),
                resource=resource,
                code=code,
                detail=state.get("error_message"),
                key_id=key.id if key is not None else state.get("claimed_key_id"),
                key_name=key.name if key is not None else None,
                role=key.role.value if key is not None else None,
                client=f"{client[0]}:{client[1]}" if client else None,
                request_id=state.get("request_id"),
            )
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
