"""Probes and the scrape endpoint: ``/healthz`` (liveness), ``/readyz`` (model loaded, generation
worker running, registry reachable) and ``/metrics`` (Prometheus text format). No auth, unless
``GUARDIT_METRICS_SCOPE`` asks a scope of ``/metrics``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from service.auth import require_scope
from service.errors import ApiError
from service.metrics import refresh_forget_sets, render
from service.protocol.common import ErrorResponse, HealthResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class ReadyResponse(HealthResponse):
    """``GET /readyz`` when ready: also which registry this server uses, so a CLI user can check that
    ``guardit`` (``GUARDIT_DATA_DIR``) and the server look at the same one."""

    data_dir: str | None = Field(None, description="GUARDIT_DATA_DIR of the server (models, SQLite registry)")
    registry: str | None = Field(None, description="the registry's database URL, password hidden")


@router.get("/healthz", response_model=HealthResponse, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process serves HTTP (the model may still be loading)."""
    return HealthResponse(status="ok")


def _not_ready(request: Request) -> str | None:
    state = request.app.state
    runtime = getattr(state, "runtime", None)
    if getattr(state, "stopping", False):
        return "the server shutting down"
    if runtime is None or not runtime.loaded:
        return getattr(state, "load_error", None) or "the model still loading"
    engine = getattr(state, "engine", None)
    if engine is None:  # the vLLM engine takes a minute to start after the model has loaded
        return "the generation engine starting"
    if not engine.running:
        return "the generation worker stopped"
    return None


@router.get("/readyz", response_model=ReadyResponse, summary="Readiness",
            responses={503: {"model": ErrorResponse, "description": "not ready (reason in the message)"}})
async def readyz(request: Request) -> ReadyResponse:
    """200 when the model is loaded and the registry answers (with the data dir and registry it uses);
    503 (with the reason) otherwise."""
    reason = _not_ready(request)
    if reason is not None:
        raise ApiError(503, "not_ready", f"expected a ready server, found {reason}")
    runtime = request.app.state.runtime
    try:
        active = len(await run_in_threadpool(runtime.registry.active_sets))
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        logger.warning("readiness: registry unreachable: %s", type(exc).__name__)
        raise ApiError(503, "not_ready", "expected a reachable registry, found it failing") from exc
    return ReadyResponse(status="ready", model=runtime.model_id, forget_sets_active=active,
                         data_dir=str(runtime.settings.data_dir.resolve()), registry=runtime.registry.url)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format; ``guardit_forget_sets`` is refreshed from the registry first.

    Open by default. With ``GUARDIT_METRICS_SCOPE`` set, the scrape needs a key with that scope: the
    gate counters move with each request, so a caller who can read them learns whether its own
    prompt opened the gate (see README, what an observer can infer)."""
    scope = request.app.state.settings.metrics_scope
    if scope:
        await require_scope(scope)(request)
    return await run_in_threadpool(_render_metrics, request)


def _render_metrics(request: Request) -> Response:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        try:
            refresh_forget_sets([r.status for r in runtime.registry.list()])
        except Exception as exc:  # noqa: BLE001 - a scrape still answers with the other metrics
            logger.warning("metrics: registry unreachable: %s", type(exc).__name__)
    body, content_type = render()
    return Response(body, media_type=content_type)
