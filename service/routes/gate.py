"""``POST /v1/gate``: which forget sets and clusters a prompt would open, without generating
(the GUARD-IT gate K(x), arXiv 2605.12765)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from service.auth import require_scope
from service.deps import LoadedRuntimeDep, parse_body
from service.errors import error_responses
from service.metrics import GATE_DECISIONS
from service.openapi import json_body
from service.protocol.compare import GateRequest, GateResponse, gate_response
from service.runtime import Runtime
from steering import GateMatch
from steering.types import Prompt

logger = logging.getLogger(__name__)

router = APIRouter(tags=["gate"])


def _decide(runtime: Runtime, prompt: Prompt) -> list[GateMatch]:
    runtime.sync()  # cheap change-token check: sets built or revoked by another process count too
    return runtime.guard.gate([prompt])[0]


@router.post("/v1/gate", response_model=GateResponse, responses=error_responses(401, 403, 413, 415, 422, 503),
             openapi_extra=json_body(GateRequest),
             summary="The gate decision for a prompt, without generating")
async def gate(request: Request, _key: Annotated[str, Depends(require_scope("compare"))],
               runtime: LoadedRuntimeDep) -> GateResponse:
    """Body: exactly one of ``prompt`` (one user turn) and ``messages``, optional ``answer``;
    ``matched`` is most similar first."""
    body = await parse_body(request, GateRequest)
    prompt = body.to_prompt(runtime.settings.prompt_char_limit)
    matches = await run_in_threadpool(_decide, runtime, prompt)
    GATE_DECISIONS.labels(result="open" if matches else "closed").inc()
    logger.info("gate: %d clusters open", len(matches), extra={"matched": len(matches)})
    return gate_response(matches)
