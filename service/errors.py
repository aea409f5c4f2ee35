"""Every failure of the guardit HTTP API as ``{"error": {"code", "message", "field"}}`` (SPEC.md).

Library errors (``steering.SteeringError``), registry errors, engine errors and request validation
map to 4xx with the offending field named; only a bug is a 500, logged without request bodies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.registry import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    RegistryError,
)
from steering import ModelLoadError, SteeringError, UnknownForgetSetError

logger = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid_request", 429: "queue_full", 500: "internal_error",
          503: "unavailable", 504: "timeout"}
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_INDEX = re.compile(r"\[(\d+)\]")


class ApiError(Exception):
    """An error the API answers as is.

    Args:
        status: HTTP status code.
        code: machine-readable error code (``invalid_request``, ``not_found``, ...).
        message: human-readable text ("expected X, found Y"); never carries secrets or document text.
        field: the offending input field (dotted path), if one is to blame.
        headers: extra response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def code_for(status: int) -> str:
    """The default error code of an HTTP status."""
    return _CODES.get(status, "client_error" if status < 500 else "server_error")


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status,
                        headers=dict(headers or {}))


def dotted(field: str | None) -> str | None:
    """``retain[3]`` -> ``retain.3`` (the library's notation to the API's)."""
    return None if field is None else _INDEX.sub(r".\1", field)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "constrained-str"})


def validation_field(loc: Sequence[Any]) -> str | None:
    """The dotted field of a pydantic error location, without its ``body``/``query`` prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    # pydantic names the union member that failed ("str", "list[TextPart]", "function-after[...]");
    # that is a type, not a field of the request.
    parts = [p for p in parts if p not in _TYPE_TAGS and not any(c in p for c in "[(")]
    return ".".join(parts) or None


def validation_message(error: Mapping[str, Any], field: str | None) -> str:
    """A message naming the field of one pydantic error."""
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = error.get("type")
    if kind == "missing":
        return f"expected field '{field}', found it missing"
    if kind == "extra_forbidden":
        return f"expected only documented fields, found unknown field '{field}'"
    return f"invalid '{field}': {msg}" if field else msg


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first: Mapping[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = validation_field(first.get("loc", ()))
    return error_response(422, "invalid_request", validation_message(first, field), field)


def _steering_status(exc: SteeringError) -> tuple[int, str]:
    if isinstance(exc, UnknownForgetSetError):
        return 404, "not_found"
    if isinstance(exc, ModelLoadError):
        return 503, "unavailable"
    return 422, "invalid_request"


async def _steering(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SteeringError)
    status, code = _steering_status(exc)
    return error_response(status, code, str(exc), dotted(exc.field))


async def _registry(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    for kind, status in ((NotFoundError, 404), (InvalidTransitionError, 409), (InvalidInputError, 422)):
        if isinstance(exc, kind):
            return error_response(status, code_for(status), str(exc), dotted(exc.field))
    logger.error("registry failure on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
    return error_response(500, "registry_error", str(exc), None)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code_for(exc.status_code), message, None, exc.headers)


async def _engine(_: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "status_code", 500))
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
    if status >= 500 and status not in (503, 504):
        logger.error("engine failure: %s", type(exc).__name__, exc_info=exc)
    code = str(getattr(exc, "code", code_for(status)))
    return error_response(status, code, str(exc), dotted(getattr(exc, "field", None)), headers)


def internal_error_response() -> JSONResponse:
    """The body of an unexpected failure (details are in the server log, under the request id)."""
    return error_response(500, "internal_error",
                          "internal server error; see the server log for the request id")


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on ``app`` (the catch-all 500 lives in the request middleware)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(SteeringError, _steering)
    app.add_exception_handler(RegistryError, _registry)
    app.add_exception_handler(HTTPException, _http)
    try:  # the engine's errors (QueueFullError 429 + Retry-After, RequestTimeoutError 504, ...)
        from service.generation import EngineError
    except ImportError:  # pragma: no cover - engine not installed
        return
    app.add_exception_handler(EngineError, _engine)
