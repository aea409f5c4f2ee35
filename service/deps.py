"""Typed FastAPI dependencies of the generation routes: the engine, request ids, manual body parsing.

Bodies are parsed inside the route, after the scope dependency ran, so an unauthorised caller gets
401/403 and learns nothing about the schema (SPEC.md).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.engine import Engine
from service.schemas import ErrorResponse

M = TypeVar("M", bound=BaseModel)

#: ``responses=`` of the generation routes, for OpenAPI.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (401, "missing or unknown API key"), (403, "key lacks the scope"), (404, "unknown model"),
        (422, "invalid field"), (429, "queue full (see Retry-After)"), (503, "not ready or shutting down"),
        (504, "timed out"))
}


def get_engine(request: Request) -> Engine:
    """The app's engine (created by the lifespan); 503 until it exists."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status_code=503,
                            detail="expected a loaded model, found the server still starting")
    return engine  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]


def request_id(request: Request) -> str:
    """The request's id: set by middleware, else the ``X-Request-ID`` header, else a new one."""
    given = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return str(given) if given else uuid.uuid4().hex


async def parse_body(request: Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``; errors become FastAPI's 422 with ``body.<field>`` locations."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except RecursionError as exc:  # json gives up on very deep nesting: bad input, not a server error
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "input": None,
                                       "msg": "expected a JSON object, found JSON nested too deeply"}]) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = f"expected a JSON object, found invalid JSON ({exc})"
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "input": None,
                                       "msg": message}]) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found = exc.errors(include_url=False, include_context=False)
        errors = [{**e, "loc": ("body", *e["loc"])} for e in found]
        raise RequestValidationError(errors) from exc
