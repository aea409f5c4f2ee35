"""``POST /v1/generate``: text generation with every active forget set applied (GUARD-IT, SPEC.md).

There is no field that turns steering off; unsteered output exists only behind ``/v1/compare``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from service.auth import require_scope
from service.deps import ERROR_RESPONSES, EngineDep, parse_body, request_id
from service.engine import EngineError, StreamEvent
from service.openapi import json_body
from service.schemas import GenerateRequest, GenerateResponse, generate_response
from steering import Generation, SteeringError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["generate"])

DONE = "data: [DONE]\n\n"


def sse(payload: BaseModel | dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    text = payload.model_dump_json() if isinstance(payload, BaseModel) else json.dumps(payload)
    return f"data: {text}\n\n"


def sse_error(exc: Exception) -> str:
    """The error event of a stream that already answered 200: ``{"error": {code, message, field}}``."""
    if isinstance(exc, EngineError | SteeringError):
        code = getattr(exc, "code", "invalid_request")
        body = {"code": code, "message": str(exc), "field": getattr(exc, "field", None)}
    else:
        logger.error("stream failed: %s", type(exc).__name__, exc_info=exc)
        body = {"code": "internal_error", "message": "generation failed", "field": None}
    return sse({"error": body})


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """A ``text/event-stream`` response that proxies do not buffer."""
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(stream: AsyncIterator[StreamEvent]) -> AsyncIterator[str]:
    try:
        async for event in stream:
            if isinstance(event, str):
                yield sse({"delta": event})
            elif isinstance(event, Generation):
                yield sse(generate_response(event).model_dump())
    except Exception as exc:  # noqa: BLE001 - the status line is gone: report in-band
        yield sse_error(exc)
    yield DONE


@router.post("/v1/generate", response_model=GenerateResponse, responses=ERROR_RESPONSES,
             openapi_extra=json_body(GenerateRequest),
             summary="Generate text with every active forget set applied")
async def generate(request: Request, _key: Annotated[str, Depends(require_scope("generate"))],
                   engine: EngineDep) -> Any:
    """Body: ``prompt`` (a user turn) or ``messages``, ``max_new_tokens``, ``temperature``, ``top_p``,
    ``seed``, ``stop``, ``stream``. With ``stream`` the answer is server-sent events: ``{"delta"}``
    per token, then the full response, then ``[DONE]``."""
    body = await parse_body(request, GenerateRequest)
    req = body.to_request(request_id=request_id(request), route="/v1/generate",
                          cap=engine.settings.max_new_tokens)
    if body.stream:
        return sse_response(_events(engine.stream(req)))
    return generate_response(await engine.generate(req))
