"""``POST /v1/generate``: text generation with every active forget set applied (GUARD-IT, docs/SPEC.md).

There is no field that turns steering off; unsteered output exists only behind ``/v1/compare``. The
gate's decision (``guardit``) is shown only to callers that may see it (``deps.shows_gate``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from service.auth import require_scope
from service.deps import EngineDep, parse_body, request_id, shows_gate
from service.engine import StreamEvent
from service.errors import classify, error_body, error_responses
from service.openapi import json_body
from service.protocol.generate import GenerateRequest, GenerateResponse, generate_response
from steering import Generation

logger = logging.getLogger(__name__)

router = APIRouter(tags=["generate"])

DONE = "data: [DONE]\n\n"
#: ``responses=`` of the generation routes, for OpenAPI.
GENERATION_ERRORS = error_responses(401, 403, 404, 413, 415, 422, 429, 503, 504)


def _hidden(model: BaseModel) -> set[str] | None:
    # A hidden gate decision is absent, not null: nothing in the shape tells that there is one.
    return {"guardit"} if getattr(model, "guardit", True) is None else None


def sse(payload: BaseModel | dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    text = payload.model_dump_json(exclude=_hidden(payload)) if isinstance(payload, BaseModel) \
        else json.dumps(payload)
    return f"data: {text}\n\n"


def sse_error(exc: Exception) -> str:
    """The error event of a stream that already answered 200: ``{"error": {code, message, field}}``."""
    if classify(exc).status >= 500:
        logger.error("stream failed: %s", type(exc).__name__, exc_info=exc)
    return sse(error_body(exc))


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """A ``text/event-stream`` response that proxies do not buffer."""
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def json_response(model: BaseModel) -> JSONResponse:
    """``model`` as JSON; a hidden ``guardit`` is absent, not null."""
    return JSONResponse(model.model_dump(mode="json", exclude=_hidden(model)))


async def _events(stream: AsyncIterator[StreamEvent], show: bool) -> AsyncIterator[str]:
    try:
        async for event in stream:
            if isinstance(event, str):
                yield sse({"delta": event})
            elif isinstance(event, Generation):
                yield sse(generate_response(event, show_gate=show))
    except Exception as exc:  # noqa: BLE001 - the status line is gone: report in-band
        yield sse_error(exc)
    yield DONE


@router.post("/v1/generate", response_model=GenerateResponse, responses=GENERATION_ERRORS,
             openapi_extra=json_body(GenerateRequest),
             summary="Generate text with every active forget set applied")
async def generate(request: Request, _key: Annotated[str, Depends(require_scope("generate"))],
                   engine: EngineDep) -> Any:
    """Body: exactly one of ``prompt`` (a user turn) and ``messages``, ``max_new_tokens``,
    ``temperature``, ``top_p``, ``seed``, ``stop``, ``stream``. With ``stream`` the answer is
    server-sent events: ``{"delta"}`` per token, then the full response, then ``[DONE]``."""
    body = await parse_body(request, GenerateRequest)
    req = body.to_request(request_id=request_id(request), route="/v1/generate", settings=engine.settings)
    show = shows_gate(request)
    if body.stream:
        return sse_response(_events(await engine.open_stream(req), show))
    return json_response(generate_response(await engine.generate(req), show_gate=show))
