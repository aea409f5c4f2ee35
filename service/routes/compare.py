"""``POST /v1/compare``: the same request steered and unsteered, same seed (GUARD-IT A/B, docs/SPEC.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from service.auth import require_scope
from service.deps import EngineDep, parse_body, request_id
from service.openapi import json_body
from service.protocol.compare import CompareRequest, CompareResponse, compare_response
from service.routes.generate import GENERATION_ERRORS

router = APIRouter(tags=["compare"])


@router.post("/v1/compare", response_model=CompareResponse, responses=GENERATION_ERRORS,
             openapi_extra=json_body(CompareRequest),
             summary="The same request steered and unsteered, side by side")
async def compare(request: Request, _key: Annotated[str, Depends(require_scope("compare"))],
                  engine: EngineDep) -> Any:
    """Body as ``/v1/generate`` without ``stream``; both arms share the seed (drawn when absent)."""
    body = await parse_body(request, CompareRequest)
    req = body.to_request(request_id=request_id(request), route="/v1/compare", settings=engine.settings)
    steered, unsteered = await engine.compare(req)
    return compare_response(steered, unsteered)
