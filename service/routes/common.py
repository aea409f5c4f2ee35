"""Dependencies shared by the registry, gate and health routers: the runtime and documented errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from service.errors import ApiError
from service.runtime import Runtime
from service.schemas import ErrorResponse


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": text} for code, text in pairs}


AUTH_ERRORS = _errors((401, "missing or unknown API key"), (403, "key lacks the scope"))
#: ``responses=`` of the forget-set routes, for OpenAPI.
FORGET_ERRORS = {**AUTH_ERRORS, **_errors(
    (404, "unknown forget-set id"), (409, "the set's status does not allow this"), (413, "body too large"),
    (422, "invalid field (named in error.field)"), (503, "model still loading"))}


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (registry reachable, model maybe still loading)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "unavailable", "expected a started server, found it still starting")
    return runtime  # type: ignore[no-any-return]


def get_loaded_runtime(request: Request) -> Runtime:
    """The app's runtime once its model is loaded; 503 while it loads."""
    runtime = get_runtime(request)
    if not runtime.loaded:
        error = getattr(request.app.state, "load_error", None)
        raise ApiError(503, "unavailable", f"expected a loaded model, found {error or 'it still loading'}")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
LoadedRuntimeDep = Annotated[Runtime, Depends(get_loaded_runtime)]
