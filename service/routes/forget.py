"""``/v1/forget-sets``: register, list, inspect, tune and revoke GUARD-IT forget sets (SPEC.md).

Registration validates everything before writing and returns 202; the background build worker takes
the set from ``pending`` through ``building`` to ``active`` (or ``failed``). Revocation stops
steering at once: the in-process gate snapshot is rebuilt before the response is sent.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.auth import require_scope
from service.db_models import Status
from service.deps import LoadedRuntimeDep, RuntimeDep, parse_body
from service.errors import error_responses
from service.openapi import json_body
from service.protocol.forget import (
    ForgetSetCreated,
    ForgetSetCreateRequest,
    ForgetSetList,
    ForgetSetResponse,
    ForgetSetUpdateRequest,
    forget_set_response,
)
from service.registry import NotFoundError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["forget-sets"])
ForgetScope = Annotated[str, Depends(require_scope("forget"))]
SetId = Annotated[str, Path(description="forget-set id, e.g. fs_0123456789ab")]
Reason = Annotated[str, Query(min_length=1, max_length=2000, description="why (audited)")]
FORGET_ERRORS = error_responses(401, 403, 404, 409, 413, 415, 422, 503)


@router.post("/v1/forget-sets", status_code=202, response_model=ForgetSetCreated, responses=FORGET_ERRORS,
             openapi_extra=json_body(ForgetSetCreateRequest),
             summary="Register a forget set (built in the background)")
async def create_forget_set(request: Request, response: Response, actor: ForgetScope,
                            runtime: LoadedRuntimeDep) -> ForgetSetCreated:
    """Body: ``name``, exactly one of ``documents`` or ``qa``, optional ``retain``, ``reason``,
    ``requested_by``, ``ticket``, ``subjects``, and optional ``layer``, ``threshold``, ``alpha``."""
    body = await parse_body(request, ForgetSetCreateRequest)
    record = await run_in_threadpool(runtime.register, body.to_registration(), actor=actor)
    builder = getattr(request.app.state, "builder", None)
    if builder is not None:
        builder.wake()
    logger.info("forget set %s registered by %s: %d %s", record.id, actor, record.n_documents,
                record.doc_kind, extra={"forget_set_id": record.id})
    response.headers["Location"] = f"/v1/forget-sets/{record.id}"
    return ForgetSetCreated(id=record.id, status=record.status)


@router.get("/v1/forget-sets", response_model=ForgetSetList, responses=FORGET_ERRORS,
            summary="List forget sets, newest first")
def list_forget_sets(actor: ForgetScope, runtime: RuntimeDep,
                     status: Annotated[Status | None, Query(description="only sets in this status")] = None
                     ) -> ForgetSetList:
    """Every set (or those in ``status``) with its build facts; never its texts."""
    records = runtime.registry.list(status=status)
    return ForgetSetList(forget_sets=[forget_set_response(r.to_dict()) for r in records])


@router.get("/v1/forget-sets/{id}", response_model=ForgetSetResponse, responses=FORGET_ERRORS,
            summary="One forget set")
def get_forget_set(id: SetId, actor: ForgetScope, runtime: RuntimeDep) -> ForgetSetResponse:
    """Status, build facts (``n_documents``, ``n_clusters``, ``silhouette``, ``layer``, ``build_phase``,
    ``build_progress``), knobs, ``subjects``, times."""
    return forget_set_response(runtime.registry.get(id).to_dict())


@router.get("/v1/forget-sets/{id}/report", responses=error_responses(401, 403, 404, 422, 503),
            summary="The set's verification report (what to attach to the ticket)")
def get_forget_set_report(id: SetId, actor: ForgetScope, runtime: RuntimeDep,
                          format: Annotated[Literal["json", "markdown"],  # noqa: A002 - the query name
                                            Query(description="json, or markdown to download")] = "json",
                          ) -> Response:
    """Leak, abstain, degenerate and changed-neighbour rates per probe kind, with examples, measured
    through the answer policy when the set became active (404 until then, and after revocation)."""
    report = runtime.registry.get_report(id)
    if report is None:
        raise NotFoundError(f"expected a verification report for forget set {id}, found none yet "
                            "(it is made once the set is active, unless GUARDIT_VERIFY_ON_BUILD is off)")
    if format == "markdown":
        return Response(str(report.get("markdown", "")), media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{id}-verification.md"'})
    return JSONResponse(report)


@router.patch("/v1/forget-sets/{id}", response_model=ForgetSetResponse, responses=FORGET_ERRORS,
              openapi_extra=json_body(ForgetSetUpdateRequest), summary="Change threshold, alpha or enabled")
async def update_forget_set(request: Request, id: SetId, actor: ForgetScope,
                            runtime: RuntimeDep) -> ForgetSetResponse:
    """Body: any of ``threshold``, ``alpha``, ``enabled`` and an audited ``reason``; effective at once."""
    body = await parse_body(request, ForgetSetUpdateRequest)
    record = await run_in_threadpool(runtime.registry.update, id, threshold=body.threshold, alpha=body.alpha,
                                     enabled=body.enabled, actor=actor, reason=body.reason)
    await run_in_threadpool(runtime.sync, force=True)
    logger.info("forget set %s updated by %s", id, actor, extra={"forget_set_id": id})
    return forget_set_response(record.to_dict())


@router.delete("/v1/forget-sets/{id}", response_model=ForgetSetResponse, responses=FORGET_ERRORS,
               summary="Revoke a forget set: steering for it stops at once")
def revoke_forget_set(id: SetId, actor: ForgetScope, runtime: RuntimeDep,
                      reason: Reason) -> ForgetSetResponse:
    """The record and its audit trail stay; its texts and artifacts are deleted."""
    record = runtime.registry.revoke(id, reason=reason, actor=actor)
    runtime.sync(force=True)  # the gate snapshot drops the set before this response is sent
    logger.info("forget set %s revoked by %s", id, actor, extra={"forget_set_id": id})
    return forget_set_response(record.to_dict())
