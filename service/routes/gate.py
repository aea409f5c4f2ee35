"""``POST /v1/gate``: which forget sets and clusters a prompt would open, without generating
(the GUARD-IT gate K(x), arXiv 2605.12765)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from service.auth import require_scope
from service.deps import parse_body
from service.metrics import GATE_DECISIONS
from service.openapi import json_body
from service.routes.common import FORGET_ERRORS, LoadedRuntimeDep
from service.runtime import Runtime
from service.schemas import GateRequest, GateResponse, gate_response
from steering import GateMatch
from steering.types import Prompt

logger = logging.getLogger(__name__)

router = APIRouter(tags=["gate"])


def _decide(runtime: Runtime, prompt: Prompt) -> list[GateMatch]:
    runtime.sync()  # cheap change-token check: sets built or revoked by another process count too
    return runtime.guard.gate([prompt])[0]


@router.post("/v1/gate", response_model=GateResponse, responses=FORGET_ERRORS,
             openapi_extra=json_body(GateRequest),
             summary="The gate decision for a prompt, without generating")
async def gate(request: Request, _key: Annotated[str, Depends(require_scope("compare"))],
               runtime: LoadedRuntimeDep) -> GateResponse:
    """Body: ``prompt`` (one user turn) or ``messages``; ``matched`` is most similar first."""
    body = await parse_body(request, GateRequest)
    matches = await run_in_threadpool(_decide, runtime, body.to_prompt())
    GATE_DECISIONS.labels(result="open" if matches else "closed").inc()
    logger.info("gate: %d clusters open", len(matches), extra={"matched": len(matches)})
    return gate_response(matches)
