"""The guardit HTTP server: ``create_app(settings)`` and ``serve(settings)`` (GUARD-IT inference-time
unlearning as a service, arXiv 2605.12765; interface in SPEC.md).

Nothing heavy happens at import or in ``create_app``: the lifespan opens the registry, requeues
builds a crash interrupted, then loads the model in the background (``/readyz`` says when), starts
the generation engine and the build worker, and on shutdown drains them in that order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import APIRouter, FastAPI

from service.auth import KeyStore
from service.builder import BuildWorker
from service.errors import install_error_handlers
from service.metrics import attach_kernel_fallbacks
from service.middleware import RequestMiddleware
from service.openapi import install_openapi
from service.runtime import Runtime
from service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: Seconds uvicorn waits for in-flight requests on SIGTERM, and the engine's drain budget after it.
GRACEFUL_SHUTDOWN_S = 30.0
DESCRIPTION = ("Inference-time unlearning for LLMs (GUARD-IT, arXiv 2605.12765): register forget sets, "
               "generate with gated activation redirection, compare steered and unsteered output.")


def _version() -> str:
    try:
        return metadata.version("guardit")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _routers() -> list[APIRouter]:
    from service.routes import audit, compare, console, forget, gate, generate, health, openai

    return [health.router, forget.router, audit.router, gate.router, console.router, generate.router,
            compare.router, openai.router]


def _configure_kernels(settings: Settings) -> None:
    from kernels.dispatch import set_use_triton

    attach_kernel_fallbacks()
    set_use_triton(settings.use_triton)


def _new_engine(runtime: Runtime, settings: Settings) -> Any:
    from service.engine_vllm import engine_for

    engine = engine_for(runtime, settings)
    engine.start()
    return engine


async def _start_serving(app: FastAPI) -> None:
    """Load the model, start the engine and the build worker; a failure leaves /readyz at 503."""
    state, settings = app.state, app.state.settings
    runtime: Runtime = state.runtime
    try:
        await asyncio.to_thread(lambda: runtime.guard)
        if state.engine is None:
            engine = await asyncio.to_thread(_new_engine, runtime, settings)
            state.own_engine = engine
            if state.engine is None:  # a caller may have installed its own meanwhile
                state.engine = engine
        if state.run_builder:
            state.builder = BuildWorker(runtime, poll_interval_s=max(0.2, settings.sync_interval_s / 2))
            state.builder.start()
        logger.info("ready: model %s on %s (%s)", runtime.model_id, runtime.device, str(runtime.dtype))
    except Exception as exc:  # noqa: BLE001 - stay alive and say why in /readyz
        state.load_error = f"{type(exc).__name__}: {exc}"
        logger.exception("startup failed; /readyz answers 503")


async def _stop_serving(app: FastAPI, loader: asyncio.Task[None]) -> None:
    state = app.state
    state.stopping = True
    if not loader.done():  # a model load cannot be interrupted; let it finish briefly, else move on
        await asyncio.wait({loader}, timeout=5.0)
    if state.own_engine is not None:
        await state.own_engine.shutdown(GRACEFUL_SHUTDOWN_S)
    if state.builder is not None:
        await asyncio.to_thread(state.builder.stop, 5.0)
    if state.owns_runtime:
        state.runtime.close()
    logger.info("stopped")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.dev_mode:
        logger.warning("GUARDIT_API_KEYS is unset: local dev mode, every scope granted to every caller "
                       "on %s (loopback only)", settings.host)
    _configure_kernels(settings)
    if app.state.runtime is None:
        app.state.runtime = await asyncio.to_thread(Runtime, settings)
    runtime: Runtime = app.state.runtime
    recovered = await asyncio.to_thread(runtime.registry.recover_interrupted, actor="system:startup",
                                          stale_after_s=runtime.settings.recover_stale_after_s)
    for fs_id in recovered:
        logger.warning("forget set %s: build interrupted by a restart, requeued or failed", fs_id,
                       extra={"forget_set_id": fs_id})
    loader = asyncio.create_task(_start_serving(app))
    if runtime.loaded:  # an injected, already loaded runtime: be ready before the first request
        await loader
    try:
        yield
    finally:
        await _stop_serving(app, loader)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               engine: Any | None = None, build_worker: bool = True) -> FastAPI:
    """The guardit FastAPI application.

    Args:
        settings: service settings (default: from the environment).
        runtime: an existing runtime to serve (the app then neither loads nor closes it).
        engine: an existing, started engine to serve (the app then neither starts nor stops it).
        build_worker: build pending forget sets in a background thread (off when the caller builds
            them itself, e.g. tests that call ``runtime.build_next``).

    Returns:
        The app; the model loads when its lifespan starts.
    """
    settings = settings or get_settings()
    app = FastAPI(title="guardit", version=_version(), description=DESCRIPTION, lifespan=_lifespan,
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    state = app.state
    state.settings, state.keys = settings, KeyStore.from_settings(settings)
    state.runtime, state.owns_runtime = runtime, runtime is None
    state.engine, state.own_engine = engine, None
    state.builder, state.run_builder = None, build_worker
    state.load_error, state.stopping = None, False
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    routers = _routers()
    for router in routers:
        app.include_router(router)
    install_openapi(app, routers, description=DESCRIPTION)
    return app


def serve(settings: Settings | None = None) -> None:
    """Run the server with uvicorn: one worker (one model per process), JSON logs, graceful shutdown.

    Args:
        settings: service settings (default: from the environment).
    """
    import uvicorn

    from service.logging import configure_logging

    settings = settings or get_settings()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # progress bars would break the JSON log lines
    configure_logging(settings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1, log_config=None,
                access_log=False, server_header=False, timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
                lifespan="on")
