"""OpenAI-compatible routes (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``); the
GUARD-IT gate decision rides as a ``guardit`` object beside the standard fields for callers that may
see it (docs/SPEC.md). Defaults that differ from OpenAI's are in ``service.protocol.openai``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from service.auth import require_scope
from service.deps import EngineDep, parse_body, request_id, shows_gate
from service.engine import Engine, GateInfo, UnknownModelError
from service.openapi import json_body
from service.protocol.common import GuarditInfo, guardit_info
from service.protocol.openai import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    openai_usage,
)
from service.routes.generate import DONE, GENERATION_ERRORS, json_response, sse, sse_error, sse_response
from steering import Generation

router = APIRouter(tags=["openai"])
ScopeDep = Annotated[str, Depends(require_scope("generate"))]
_STARTED = int(time.time())

#: Builds one chunk from (text delta, finish reason, guardit, usage).
ChunkFn = Callable[[str | None, str | None, GuarditInfo | None, Any], BaseModel]


def _check_model(engine: Engine, model: str) -> None:
    if model != engine.model_id:
        raise UnknownModelError(f"expected a model listed by GET /v1/models ({engine.model_id!r}), "
                                f"found {model!r}")


async def _chunks(stream: AsyncIterator[Any], chunk: ChunkFn, include_usage: bool,
                  show: bool) -> AsyncIterator[str]:
    """OpenAI stream: a first chunk (role, and the gate decision when shown), one per delta, a last
    one with the finish reason (and the final decision when shown: a mid-stream re-check can open
    the gate after the first chunk)."""
    try:
        async for event in stream:
            if isinstance(event, GateInfo):
                yield sse(chunk("", None, guardit_info(event) if show else None, None))
            elif isinstance(event, str):
                yield sse(chunk(event, None, None, None))
            elif isinstance(event, Generation):
                yield sse(chunk(None, event.finish_reason, guardit_info(event) if show else None, None))
                if include_usage:
                    yield sse(chunk(None, None, None, openai_usage(event)))
    except Exception as exc:  # noqa: BLE001 - the status line is gone: report in-band
        yield sse_error(exc)
    yield DONE


@router.get("/v1/models", response_model=ModelList, responses=GENERATION_ERRORS, summary="The served model")
async def models(_key: ScopeDep, engine: EngineDep) -> ModelList:
    """The one model this server serves (the ``model`` value the other routes accept)."""
    return ModelList(data=[ModelCard(id=engine.model_id, created=_STARTED)])


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=GENERATION_ERRORS,
             openapi_extra=json_body(ChatCompletionRequest), summary="OpenAI chat completions, steered")
async def chat_completions(request: Request, _key: ScopeDep, engine: EngineDep) -> Any:
    """OpenAI's chat body (``n`` must be 1); ``stream`` gives ``chat.completion.chunk`` events."""
    body = await parse_body(request, ChatCompletionRequest)
    return await _respond(request, engine, body, route="/v1/chat/completions", id_prefix="chatcmpl",
                          chunk=_chat_chunk, reply=_chat_reply)


@router.post("/v1/completions", response_model=CompletionResponse, responses=GENERATION_ERRORS,
             openapi_extra=json_body(CompletionRequest),
             summary="OpenAI text completions (raw prompt, no chat template), steered")
async def completions(request: Request, _key: ScopeDep, engine: EngineDep) -> Any:
    """OpenAI's completions body (``n`` must be 1); ``prompt`` is used verbatim."""
    body = await parse_body(request, CompletionRequest)
    return await _respond(request, engine, body, route="/v1/completions", id_prefix="cmpl",
                          chunk=_completion_chunk, reply=_completion_reply)


async def _respond(request: Request, engine: Engine, body: ChatCompletionRequest | CompletionRequest, *,
                   route: str, id_prefix: str, chunk: Callable[..., BaseModel],
                   reply: Callable[[dict[str, Any], Generation, bool], BaseModel]) -> Any:
    """Both OpenAI routes after parsing: the model check, then a stream of ``chunk(base, ...)``
    events or one ``reply(base, generation, show)``; ``base`` holds the id, created and model."""
    _check_model(engine, body.model)
    rid, show = request_id(request), shows_gate(request)
    req = body.to_request(request_id=rid, route=route, settings=engine.settings)
    base: dict[str, Any] = {"id": f"{id_prefix}-{rid}", "created": int(time.time()), "model": body.model}
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_chunks(await engine.open_stream(req), partial(chunk, base), include, show))
    return json_response(reply(base, await engine.generate(req), show))


def _chat_chunk(base: dict[str, Any], text: str | None, finish: str | None, info: GuarditInfo | None,
                usage: Any) -> BaseModel:
    choices = [] if usage else [ChunkChoice(delta=ChunkDelta(
        role="assistant" if text == "" else None, content=text), finish_reason=finish)]
    return ChatCompletionChunk(**base, choices=choices, guardit=info, usage=usage)


def _chat_reply(base: dict[str, Any], gen: Generation, show: bool) -> BaseModel:
    return ChatCompletionResponse(
        **base, choices=[ChatChoice(message=AssistantMessage(content=gen.text), finish_reason=gen.finish_reason)],
        usage=openai_usage(gen), guardit=guardit_info(gen) if show else None)


def _completion_chunk(base: dict[str, Any], text: str | None, finish: str | None, info: GuarditInfo | None,
                      usage: Any) -> BaseModel:
    choices = [] if usage else [CompletionChoice(text=text or "", finish_reason=finish)]
    return CompletionResponse(**base, choices=choices, guardit=info, usage=usage)


def _completion_reply(base: dict[str, Any], gen: Generation, show: bool) -> BaseModel:
    choice = CompletionChoice(text=gen.text, finish_reason=gen.finish_reason)
    return CompletionResponse(**base, choices=[choice], usage=openai_usage(gen),
                              guardit=guardit_info(gen) if show else None)
