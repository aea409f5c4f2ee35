"""``GET /v1/audit``: the append-only log of every registry change (docs/SPEC.md), admin scope only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.auth import require_scope
from service.deps import RuntimeDep
from service.errors import error_responses
from service.protocol.audit import MAX_LIMIT, MAX_OFFSET, AuditEntryModel, AuditResponse

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", response_model=AuditResponse, responses=error_responses(401, 403, 422, 503),
            summary="Audit log: time, actor key id, action, forget-set id, reason")
def audit(actor: Annotated[str, Depends(require_scope("admin"))], runtime: RuntimeDep,
          forget_set_id: Annotated[str | None, Query(max_length=64)] = None,
          limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
          offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> AuditResponse:
    """Rows oldest first, optionally of one forget set; page with ``limit`` and ``offset``."""
    entries = runtime.registry.audit(forget_set_id=forget_set_id, limit=limit, offset=offset)
    return AuditResponse(entries=[AuditEntryModel(**e.to_dict()) for e in entries], limit=limit,
                         offset=offset)
