"""Typed FastAPI dependencies: the runtime and the engine (one path answering 503 while the server
starts), request ids, who may see the gate, and body parsing after the scope check.

Bodies are parsed inside the route, after the scope dependency ran, so an unauthorised caller gets
401/403 and learns nothing about the schema (docs/SPEC.md).
"""

from __future__ import annotations

import uuid
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from service.engine import Engine
from service.errors import ApiError
from service.protocol import body as json_body
from service.runtime import Runtime
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)
#: Scopes whose holders see the gate's decision (``guardit``) in generation responses.
GATE_SCOPES = frozenset({"compare", "admin"})


def _unavailable(found: str) -> ApiError:
    return ApiError(503, "unavailable", f"expected a ready server, found {found}")


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (registry reachable, model maybe still loading); 503 before it exists."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise _unavailable("it still starting")
    return runtime  # type: ignore[no-any-return]


def get_loaded_runtime(request: Request) -> Runtime:
    """The app's runtime once its model is loaded; 503 while it loads or after it failed to."""
    runtime = get_runtime(request)
    if not runtime.loaded:
        raise _unavailable(getattr(request.app.state, "load_error", None) or "the model still loading")
    return runtime


def get_engine(request: Request) -> Engine:
    """The app's generation engine (started by the lifespan); 503 until it exists."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise _unavailable(getattr(request.app.state, "load_error", None) or "the model still loading")
    return engine  # type: ignore[no-any-return]


def get_settings_of(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
LoadedRuntimeDep = Annotated[Runtime, Depends(get_loaded_runtime)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings_of)]


def request_id(request: Request) -> str:
    """The request's id: set by middleware, else the ``X-Request-ID`` header, else a new one."""
    given = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return str(given) if given else uuid.uuid4().hex


def shows_gate(request: Request) -> bool:
    """Whether this caller may see gate internals: its key also holds ``compare`` or ``admin``, or
    ``GUARDIT_EXPOSE_GATE_TO_GENERATE`` trusts every generate caller (the scope dependency ran first)."""
    if request.app.state.settings.expose_gate_to_generate:
        return True
    scopes: frozenset[str] = getattr(request.state, "scopes", frozenset())
    return bool(scopes & GATE_SCOPES)


async def parse_body(request: Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``.

    Raises:
        ApiError: 415 for a declared ``Content-Type`` that is not JSON (none declared reads as JSON).
        BodyError: unreadable JSON or a value nothing downstream takes (``service.protocol.body``).
        RequestValidationError: the body does not fit ``model`` (``body.<field>`` locations).
    """
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared and declared != "application/json" and not declared.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type application/json, found {declared[:60]}")
    data = json_body.loads(await request.body())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from fastapi.exceptions import RequestValidationError

        found = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in found]) from exc
