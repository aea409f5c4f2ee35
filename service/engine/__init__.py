"""The serving engine (GUARD-IT, arXiv 2605.12765): continuous batching with per-row steering on one
model, behind the answer policy. ``Engine`` is the façade the routes and the CLI use; the work is
split by concern:

- ``admission``: request checks, tokenization off the event loop, the bounded queue,
  ``Retry-After``;
- ``batch``: the worker thread's continuous batch (prefill, decode steps, per-row steering
  re-read from the gate snapshot at every step, finishing rows);
- ``policy``: the answer policy's verdicts on whole answers and on held-back streams.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from service.engine.admission import Admission, EngineTokenizer
from service.engine.batch import BatchWorker
from service.engine.policy import AnswerPolicy
from service.generation import (
    EngineClosedError,
    EngineError,
    GateInfo,
    GenerationRequest,
    QueueFullError,
    RequestHandle,
    RequestTimeoutError,
    StreamEvent,
    UnknownModelError,
)
from steering import Generation

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

__all__ = ["Engine", "EngineClosedError", "EngineError", "GateInfo", "GenerationRequest", "QueueFullError",
           "RequestHandle", "RequestTimeoutError", "StreamEvent", "UnknownModelError"]


class Engine:
    """Continuous-batching generation with per-row GUARD-IT steering on one model.

    Args:
        runtime: the loaded model, gate snapshot and registry.
        settings: batching, limits and timeouts (``max_batch_size``, ``batch_wait_ms``, ``queue_size``,
            ``request_timeout_s``, ``max_new_tokens``, ``max_prompt_tokens``, ``sync_interval_s``) and the
            answer policy (``answer_recheck``, ``leak_check``, ``abstain_text``, ``stream_holdback_tokens``).
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._admission = Admission(settings)
        self._start_lock = threading.Lock()
        self._tok: EngineTokenizer | None = None
        self._policy: AnswerPolicy | None = None
        self._worker: BatchWorker | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The served model's id (what ``GET /v1/models`` lists)."""
        return self.runtime.model_id

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._admission)

    @property
    def active_rows(self) -> int:
        """Rows in the running batch."""
        return len(self._worker.active) if self._worker is not None else 0

    @property
    def running(self) -> bool:
        """True while the worker thread is alive and accepting."""
        return self._alive() and self._admission.accepting

    def start(self) -> None:
        """Load the model (if not yet) and start the worker thread; idempotent."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._tok = EngineTokenizer(self.runtime.guard.tokenizer)
            self._policy = AnswerPolicy(self.runtime, self.settings, self._tok, self._admission.on_worker)
            self._worker = BatchWorker(self.runtime, self.settings, self._admission, self._policy, self._tok)
            self._thread = threading.Thread(target=self._worker.run, name="guardit-engine", daemon=True)
            self._thread.start()

    def close(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let running and queued requests finish for ``drain_timeout`` seconds,
        then fail what is left with ``EngineClosedError`` and stop the worker."""
        self._admission.stop_accepting()
        deadline = time.monotonic() + drain_timeout
        while (self.queue_depth or self.active_rows) and time.monotonic() < deadline and self._alive():
            time.sleep(0.02)
        self._admission.stop()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, drain_timeout))
        for row in self._admission.drain():  # worker never started or died
            row.post("error", EngineClosedError("expected a running engine, found it shut down"))

    async def shutdown(self, drain_timeout: float = 30.0) -> None:
        """``close`` without blocking the event loop (streams keep flowing while draining)."""
        await asyncio.to_thread(self.close, drain_timeout)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submission (event-loop side) -------------------------------------------------------------
    def submit(self, req: GenerationRequest, *, stream: bool = False) -> RequestHandle:
        """Validate and enqueue; raises ``ConfigError`` (422), ``QueueFullError``, ``EngineClosedError``."""
        return self._enqueue([(req, self._tokenize(req))], stream=stream)[0]

    async def submit_async(self, req: GenerationRequest, *, stream: bool = False) -> RequestHandle:
        """``submit`` with the tokenization off the event loop (a long prompt never stalls the server)."""
        ids = await asyncio.to_thread(self._tokenize, req)
        return self._enqueue([(req, ids)], stream=stream)[0]

    async def generate(self, req: GenerationRequest) -> Generation:
        """One generation under the answer policy (``steering.recheck``): steered by every active forget
        set the prompt opens, re-checked, and replaced by the neutral answer rather than leak."""
        gen = await self._generate_once(req)
        return await self._reviewed(req, gen)

    async def open_stream(self, req: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """Submit now (errors raise here, before any byte is sent; tokenization off the event loop)
        and return the event iterator: the gate decision, text deltas, the final ``Generation``."""
        return (await self.submit_async(req, stream=True)).events()

    async def compare(self, req: GenerationRequest) -> tuple[Generation, Generation]:
        """The request steered and unsteered, same seed (drawn here when absent); (steered, unsteered).
        The steered arm is what a ``generate`` caller gets (answer policy included)."""
        seed = req.params.seed if req.params.seed is not None else secrets.randbits(31)
        params = replace(req.params, seed=seed)
        arms = [replace(req, params=params, steer=flag) for flag in (True, False)]
        ids = await asyncio.to_thread(self._tokenize, arms[0])
        handles = self._enqueue([(arm, ids) for arm in arms], stream=False)
        steered, unsteered = await asyncio.gather(*(self._await(h) for h in handles))
        return await self._reviewed(arms[0], steered), unsteered

    async def _reviewed(self, req: GenerationRequest, gen: Generation) -> Generation:
        self.start()
        assert self._policy is not None
        return await self._policy.review(req, gen, self._generate_once)

    async def _generate_once(self, req: GenerationRequest) -> Generation:
        return await self._await(await self.submit_async(req))

    async def _await(self, handle: RequestHandle) -> Generation:
        try:  # backstop only: the worker enforces the deadline itself between tokens
            async with asyncio.timeout(self.settings.request_timeout_s + 10.0):
                return await handle.result()
        except TimeoutError as exc:
            handle.cancel()
            raise RequestTimeoutError(f"expected a result within {self.settings.request_timeout_s:g} s, "
                                      "found none") from exc

    def _enqueue(self, prepared: Sequence[tuple[GenerationRequest, list[int]]], *,
                 stream: bool) -> list[RequestHandle]:
        self.start()
        return self._admission.enqueue(prepared, stream=stream, running=self.active_rows,
                                       wake=self._admission.wake)

    def _tokenize(self, req: GenerationRequest) -> list[int]:
        self.start()  # the engine's own tokenizer copy is made there
        assert self._tok is not None
        return self._admission.tokenize(self._tok, req)
