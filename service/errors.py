"""One table from every error type to its HTTP status, error code and CLI exit code (docs/SPEC.md):
the HTTP handlers answer ``{"error": {"code", "message", "field"}}`` from it, and the CLI calls
``exit_code_for`` and ``error_body``. Only a bug is a 500, logged without request bodies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.generation import (
    EngineClosedError,
    EngineError,
    QueueFullError,
    RequestTimeoutError,
    UnknownModelError,
)
from service.protocol.body import BodyError
from service.protocol.common import ErrorResponse
from service.registry import (
    ArtifactCorruptError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    RegistryError,
    SchemaVersionError,
)
from steering import ModelLoadError, SteeringError, UnknownForgetSetError

logger = logging.getLogger(__name__)

#: CLI exit codes: 0 success, then one per kind of failure a script may want to tell apart.
EXIT_OK, EXIT_BUG, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNAVAILABLE, EXIT_DENIED = range(7)


@dataclass(frozen=True)
class ErrorKind:
    """How one error type is answered: HTTP status, error code, CLI exit code."""

    status: int
    code: str
    exit_code: int


_INVALID = ErrorKind(422, "invalid_request", EXIT_INVALID)
_BUG = ErrorKind(500, "internal_error", EXIT_BUG)

#: Every error type the service raises on purpose; a subclass not listed takes its nearest base's row.
ERROR_TABLE: dict[type[BaseException], ErrorKind] = {
    SteeringError: _INVALID,  # ConfigError, ForgetSetError, UnsupportedModelError
    UnknownForgetSetError: ErrorKind(404, "not_found", EXIT_NOT_FOUND),
    ModelLoadError: ErrorKind(503, "unavailable", EXIT_UNAVAILABLE),
    RegistryError: ErrorKind(500, "registry_error", EXIT_BUG),
    NotFoundError: ErrorKind(404, "not_found", EXIT_NOT_FOUND),
    InvalidTransitionError: ErrorKind(409, "conflict", EXIT_CONFLICT),
    InvalidInputError: _INVALID,
    ArtifactCorruptError: ErrorKind(500, "registry_error", EXIT_BUG),
    SchemaVersionError: ErrorKind(503, "unavailable", EXIT_UNAVAILABLE),
    EngineError: _BUG,
    QueueFullError: ErrorKind(429, "queue_full", EXIT_UNAVAILABLE),
    RequestTimeoutError: ErrorKind(504, "timeout", EXIT_UNAVAILABLE),
    EngineClosedError: ErrorKind(503, "shutting_down", EXIT_UNAVAILABLE),
    UnknownModelError: ErrorKind(404, "model_not_found", EXIT_NOT_FOUND),
    BodyError: _INVALID,
    RequestValidationError: _INVALID,
    ValidationError: _INVALID,
}

#: Codes and exit codes of errors that carry their own status (``ApiError``, ``HTTPException``).
_BY_STATUS = {400: ("bad_request", EXIT_INVALID), 401: ("unauthorized", EXIT_DENIED),
              403: ("forbidden", EXIT_DENIED), 404: ("not_found", EXIT_NOT_FOUND),
              405: ("method_not_allowed", EXIT_INVALID), 409: ("conflict", EXIT_CONFLICT),
              413: ("payload_too_large", EXIT_INVALID), 415: ("unsupported_media_type", EXIT_INVALID),
              422: ("invalid_request", EXIT_INVALID), 429: ("queue_full", EXIT_UNAVAILABLE),
              500: ("internal_error", EXIT_BUG), 503: ("unavailable", EXIT_UNAVAILABLE),
              504: ("timeout", EXIT_UNAVAILABLE)}
#: OpenAPI descriptions of the statuses routes declare in ``responses=``.
_DESCRIPTIONS = {401: "missing or unknown API key", 403: "key lacks the scope",
                 404: "unknown id or model", 409: "the set's status does not allow this",
                 413: "body too large", 415: "body is not JSON", 422: "invalid field (named in error.field)",
                 429: "queue full (see Retry-After)", 503: "not ready or shutting down", 504: "timed out"}
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "constrained-str"})
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
    return _BY_STATUS.get(status, ("client_error" if status < 500 else "server_error", EXIT_BUG))[0]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route for OpenAPI: each status with the error body and its description."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def classify(exc: BaseException) -> ErrorKind:
    """The table row of ``exc`` (nearest listed base class); a 500 for anything unlisted."""
    if isinstance(exc, ApiError):
        return ErrorKind(exc.status, exc.code, _BY_STATUS.get(exc.status, ("", EXIT_BUG))[1])
    if isinstance(exc, HTTPException):
        code, exit_code = _BY_STATUS.get(exc.status_code, (code_for(exc.status_code), EXIT_BUG))
        return ErrorKind(exc.status_code, code, exit_code)
    for cls in type(exc).__mro__:
        kind = ERROR_TABLE.get(cls)
        if kind is not None:
            return kind
    return _BUG


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code of ``exc`` (``EXIT_BUG`` for anything the table does not list)."""
    return classify(exc).exit_code


def exit_code_for_code(code: str) -> int:
    """The CLI exit code of an error ``code`` a server answered with (``EXIT_INVALID`` if unknown)."""
    by_code = {c: exit_code for c, exit_code in _BY_STATUS.values()}
    by_code.update({kind.code: kind.exit_code for kind in ERROR_TABLE.values()})
    return by_code.get(code, EXIT_INVALID)


def dotted(field: str | None) -> str | None:
    """``retain[3]`` -> ``retain.3`` (the library's notation to the API's)."""
    return None if field is None else _INDEX.sub(r".\1", field)


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


def _message_and_field(exc: BaseException, kind: ErrorKind) -> tuple[str, str | None]:
    if isinstance(exc, RequestValidationError | ValidationError):
        errors = list(exc.errors())
        first: Mapping[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = validation_field(first.get("loc", ()))
        return validation_message(first, field), field
    if isinstance(exc, ApiError):
        return exc.message, exc.field
    if isinstance(exc, HTTPException):
        return (exc.detail if isinstance(exc.detail, str) else "request failed"), None
    if kind is _BUG and not isinstance(exc, EngineError):
        return "internal server error; see the server log for the request id", None
    return str(exc), dotted(getattr(exc, "field", None))


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"code", "message", "field"}}`` of ``exc`` (what HTTP answers and ``--json`` prints)."""
    kind = classify(exc)
    message, field = _message_and_field(exc, kind)
    return {"error": {"code": kind.code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body with ``status``."""
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status,
                        headers=dict(headers or {}))


def internal_error_response() -> JSONResponse:
    """The body of an unexpected failure (details are in the server log, under the request id)."""
    return error_response(500, "internal_error",
                          "internal server error; see the server log for the request id")


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    kind = classify(exc)
    if kind.status >= 500 and kind.status not in (503, 504):
        logger.error("%s on %s", type(exc).__name__, request.url.path, exc_info=exc)
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        headers = exc.headers
    elif isinstance(exc, HTTPException) and exc.headers:
        headers = dict(exc.headers)
    elif isinstance(exc, QueueFullError):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(error_body(exc), status_code=kind.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every type in ``ERROR_TABLE`` (and ``ApiError``, ``HTTPException``) from the table; the
    catch-all 500 lives in the request middleware."""
    for cls in (ApiError, HTTPException, *ERROR_TABLE):
        app.add_exception_handler(cls, _handle)
