"""The request middleware of the guardit server: request ids (``X-Request-ID`` in and out), the body
size limit (413), request metrics under the route template, one access log line per request, and the
catch-all 500 (traceback logged, request body never).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response, internal_error_response
from service.logging import REQUEST_ID
from service.metrics import UNINSTRUMENTED, observe_request

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def too_large(limit: int) -> HTTPException:
    """The 413 of a body over ``limit`` bytes (an HTTPException so FastAPI's body reader re-raises it)."""
    return HTTPException(413, f"expected a request body of at most {limit} bytes, found more")


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/forget-sets/{id}``), or ``unmatched``: low cardinality."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestMiddleware:
    """Pure ASGI middleware (streams pass through unbuffered).

    Args:
        app: the wrapped application.
        max_body_bytes: larger bodies are refused with 413, by ``Content-Length`` or while streaming.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        given = headers.get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        sent = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self._dispatch(scope, receive, send_with_id, headers.get("content-length"))
        except Exception as exc:  # noqa: BLE001 - the catch-all: a bug, never bad input
            logger.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"), route_label(scope),
                         exc_info=exc)
            sent["status"] = 500
            if not sent["started"]:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            self._finish(scope, int(sent["status"]), time.perf_counter() - started, state)
            REQUEST_ID.reset(token)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, length: str | None) -> None:
        limit = self.max_body_bytes
        if length is not None:
            if not length.isdigit():
                message = f"expected a numeric Content-Length, found {length!r:.40}"
                await error_response(400, "bad_request", message)(scope, receive, send)
                return
            if int(length) > limit:
                refusal = error_response(413, "payload_too_large", str(too_large(limit).detail))
                await refusal(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, limited, send)

    @staticmethod
    def _finish(scope: Scope, status: int, seconds: float, state: dict[str, Any]) -> None:
        path = scope.get("path", "")
        if path in UNINSTRUMENTED:
            return
        route = route_label(scope)
        observe_request(route, status, seconds)
        logger.info("%s %s -> %d in %.1f ms", scope.get("method"), route, status, seconds * 1000,
                    extra={"route": route, "status": status, "duration_ms": round(seconds * 1000, 1),
                           "actor": state.get("key_id")})
