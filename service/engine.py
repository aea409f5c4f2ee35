"""The serving engine: one worker thread owns the model and runs GUARD-IT (arXiv 2605.12765) with
continuous batching. Requests join the running batch at token boundaries; each row carries its own
gate decision and steering vector, re-read from the gate snapshot at every step (revocation applies
to the next token of running requests).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from service.decoding import KVBatch, TextTracker, decode_step, prefill, sample
from service.generation import (
    EngineClosedError,
    EngineError,
    GateInfo,
    GenerationRequest,
    QueueFullError,
    RequestHandle,
    RequestTimeoutError,
    Row,
    StreamEvent,
    UnknownModelError,
)
from service.metrics import BATCH_SIZE, GATE_DECISIONS, GENERATED_TOKENS, QUEUE_DEPTH
from steering import ConfigError, GateState, Generation
from steering.forget_set import chat_prompt
from steering.gates import build_plans
from steering.hooks import SteeringPlan
from steering.recheck import late_matches

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)

#: A streamed row whose gate is closed is gated again on its answer every this many tokens.
STREAM_RECHECK_TOKENS = 8

__all__ = ["Engine", "EngineClosedError", "EngineError", "GateInfo", "GenerationRequest", "QueueFullError",
           "RequestHandle", "RequestTimeoutError", "StreamEvent", "UnknownModelError"]


class Engine:
    """Continuous-batching generation with per-row GUARD-IT steering on one model.

    Args:
        runtime: the loaded model, gate snapshot and registry.
        settings: batching, limits and timeouts (``max_batch_size``, ``batch_wait_ms``, ``queue_size``,
            ``request_timeout_s``, ``max_new_tokens``, ``max_prompt_tokens``, ``sync_interval_s``).
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._queue: deque[Row] = deque()
        self._cv = threading.Condition()
        self._accepting = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._tok: Any = None
        self._tok_lock = threading.Lock()
        self._eos: set[int] = set()
        self._active: list[Row] = []
        self._batch: KVBatch | None = None
        self._plans: dict[int, SteeringPlan] | None = None
        self._seen_state: GateState | None = None
        self._last_sync = 0.0
        self._latency_ewma = 5.0

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The served model's id (what ``GET /v1/models`` lists)."""
        return self.runtime.model_id

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch slot."""
        return len(self._queue)

    @property
    def active_rows(self) -> int:
        """Rows in the running batch."""
        return len(self._active)

    @property
    def running(self) -> bool:
        """True while the worker thread is alive and accepting."""
        return self._thread is not None and self._thread.is_alive() and self._accepting

    def start(self) -> None:
        """Load the model (if not yet) and start the worker thread; idempotent."""
        with self._cv:
            if self._thread is not None:
                return
            guard = self.runtime.guard
            # NOTE(helperA): a private tokenizer copy: fast tokenizers are not safe to share with the
            # forget-set builder thread, which pads (mutates) the runtime's tokenizer.
            self._tok = copy.deepcopy(guard.tokenizer)
            self._eos = {t for t in (self._tok.eos_token_id, self._tok.pad_token_id) if t is not None}
            self._thread = threading.Thread(target=self._run, name="guardit-engine", daemon=True)
            self._thread.start()

    def close(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let running and queued requests finish for ``drain_timeout`` seconds,
        then fail what is left with ``EngineClosedError`` and stop the worker."""
        with self._cv:
            self._accepting = False
        deadline = time.monotonic() + drain_timeout
        while (self._queue or self._active) and time.monotonic() < deadline and self._alive():
            time.sleep(0.02)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, drain_timeout))
        for row in list(self._queue):  # worker never started or died
            row.post("error", EngineClosedError("expected a running engine, found it shut down"))
        self._queue.clear()
        QUEUE_DEPTH.set(0)

    async def shutdown(self, drain_timeout: float = 30.0) -> None:
        """``close`` without blocking the event loop (streams keep flowing while draining)."""
        await asyncio.to_thread(self.close, drain_timeout)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    # -- submission (event-loop side) -------------------------------------------------------------
    def submit(self, req: GenerationRequest, *, stream: bool = False) -> RequestHandle:
        """Validate and enqueue; raises ``ConfigError`` (422), ``QueueFullError``, ``EngineClosedError``."""
        return self._enqueue([req], stream=stream)[0]

    async def generate(self, req: GenerationRequest) -> Generation:
        """One generation (steered by every active forget set the prompt opens, or, with
        ``answer_recheck``, that the prompt plus its unsteered answer opens: see ``_recheck``)."""
        return await self._recheck(req, await self._await(self.submit(req)))

    def stream(self, req: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """Submit now (errors raise here, before any byte is sent) and return the event iterator."""
        return self.submit(req, stream=True).events()

    async def compare(self, req: GenerationRequest) -> tuple[Generation, Generation]:
        """The request steered and unsteered, same seed (drawn here when absent); (steered, unsteered)."""
        seed = req.params.seed if req.params.seed is not None else secrets.randbits(31)
        params = replace(req.params, seed=seed)
        arms = [replace(req, params=params, steer=flag) for flag in (True, False)]
        handles = self._enqueue(arms, stream=False)
        steered, unsteered = await asyncio.gather(*(self._await(h) for h in handles))
        return await self._recheck(arms[0], steered), unsteered

    async def _recheck(self, req: GenerationRequest, gen: Generation) -> Generation:
        """The answer re-check (``steering.recheck``): when the prompt left the gate closed, gate the
        prompt plus the answer; if that opens, generate again, steered by what opened. A row that stays
        closed keeps the base model's answer, so the no-op property holds. Off with
        ``answer_recheck=False``. Streams are re-checked while they run instead (``_recheck_streams``)."""
        if (not self.settings.answer_recheck or not req.steer or gen.steered or req.forced is not None
                or gen.finish_reason == "cancelled" or not gen.text):
            return gen
        state = self.runtime.guard.state
        if state.empty:
            return gen
        late = (await asyncio.to_thread(late_matches, self.runtime.guard, [req.prompt], [gen.text], state))[0]
        if not late:
            return gen
        GATE_DECISIONS.labels(result="open_on_answer").inc()
        logger.info("request %s: gate opened on the answer (%d clusters); generating again, steered",
                    req.request_id, len(late))
        again = await self._await(self.submit(replace(req, forced=tuple(late))))
        return replace(again, rechecked=again.steered)

    async def _await(self, handle: RequestHandle) -> Generation:
        try:  # backstop only: the worker enforces the deadline itself between tokens
            async with asyncio.timeout(self.settings.request_timeout_s + 10.0):
                return await handle.result()
        except TimeoutError as exc:
            handle.cancel()
            raise RequestTimeoutError(f"expected a result within {self.settings.request_timeout_s:g} s, "
                                      "found none") from exc

    def _enqueue(self, reqs: Sequence[GenerationRequest], *, stream: bool) -> list[RequestHandle]:
        self.start()
        prepared = [(req, self._tokenize(req)) for req in reqs]
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        with self._cv:
            if not self._accepting:
                raise EngineClosedError("expected a running engine, found it shutting down")
            if len(self._queue) + len(reqs) > self.settings.queue_size:
                raise QueueFullError(f"expected a free queue slot, found {len(self._queue)} requests queued",
                                     retry_after=self._retry_after())
            rows = [Row(req, ids, loop, asyncio.Queue(), stream, now, now + self.settings.request_timeout_s)
                    for req, ids in prepared]
            self._queue.extend(rows)
            QUEUE_DEPTH.set(len(self._queue))
            self._cv.notify_all()
        return [RequestHandle(row, self._wake) for row in rows]

    def _tokenize(self, req: GenerationRequest) -> list[int]:
        p = req.params
        if not 1 <= p.max_new_tokens <= self.settings.max_new_tokens:
            raise ConfigError(f"expected {req.max_tokens_field} in [1, {self.settings.max_new_tokens}], "
                              f"found {p.max_new_tokens}", field=req.max_tokens_field)
        if not (p.temperature >= 0 and math.isfinite(p.temperature)):
            raise ConfigError(f"expected temperature >= 0, found {p.temperature}", field="temperature")
        if not 0 < p.top_p <= 1:
            raise ConfigError(f"expected top_p in (0, 1], found {p.top_p}", field="top_p")
        with self._tok_lock:
            text = req.prompt if isinstance(req.prompt, str) else chat_prompt(self._tok, req.prompt)
            ids: list[int] = self._tok.encode(text, add_special_tokens=False)
        if not ids:
            raise ConfigError(f"expected a non-empty {req.prompt_field}, found no tokens",
                              field=req.prompt_field)
        if len(ids) > self.settings.max_prompt_tokens:
            raise ConfigError(f"expected at most {self.settings.max_prompt_tokens} prompt tokens, "
                              f"found {len(ids)}", field=req.prompt_field)
        return ids

    def _retry_after(self) -> int:
        waves = (len(self._queue) + len(self._active)) / self.settings.max_batch_size
        return int(min(60, max(1, math.ceil(waves * self._latency_ewma))))

    # -- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._queue and not self._active and not self._stopping:
                        self._cv.wait()
                    if self._stopping:
                        break
                    if not self._active:
                        self._wait_for_batch()
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - fail this batch, keep serving
                    logger.exception("generation step failed; failing %d rows", len(self._active))
                    for row in self._active:
                        self._fail(row, exc)
                    self._active, self._batch, self._plans = [], None, None
        for row in [*self._active, *self._queue]:
            self._fail(row, EngineClosedError("expected the request to finish, found the server "
                                              "shutting down"))
        self._active, self._batch = [], None
        self._queue.clear()

    def _wait_for_batch(self) -> None:
        """With the batch idle, give more requests ``batch_wait_ms`` to arrive (cv held)."""
        until = time.monotonic() + self.settings.batch_wait_ms / 1000.0
        while len(self._queue) < self.settings.max_batch_size and not self._stopping:
            left = until - time.monotonic()
            if left <= 0:
                break
            self._cv.wait(left)

    def _step(self) -> None:
        self._maybe_sync()
        self._drop_finished_rows()
        state = self.runtime.guard.state  # one snapshot per step for running and joining rows
        self._refresh_vectors(state)
        new = self._admit()
        if new:
            self._prefill(new, state)
        if self._batch is not None and self._active:
            rows = list(self._active)
            BATCH_SIZE.observe(len(rows))
            with self.runtime.guard.hooks.steer(self._current_plans()):
                logits = decode_step(self.runtime.guard.model, self._batch)
            self._accept(rows, logits)

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now - self._last_sync < self.settings.sync_interval_s:
            return
        self._last_sync = now
        try:
            self.runtime.sync()
        except Exception:  # noqa: BLE001 - a registry outage must not stop generation
            logger.warning("registry sync failed; serving with the last gate snapshot", exc_info=True)

    def _admit(self) -> list[Row]:
        now = time.monotonic()
        with self._cv:
            for row in [r for r in self._queue if r.cancelled or now > r.deadline]:
                self._queue.remove(row)
                self._close_row(row, "cancelled", now)
            room = self.settings.max_batch_size - len(self._active)
            if self._batch is not None and not self._batch.mergeable:
                room = 0  # this model's cache cannot take rows mid-flight: join at batch boundaries
            new = [self._queue.popleft() for _ in range(min(room, len(self._queue)))]
            QUEUE_DEPTH.set(len(self._queue))
        return new

    def _prefill(self, rows: list[Row], state: GateState) -> None:
        try:
            batch, logits = self._prefill_rows(rows, state)
        except Exception as exc:  # noqa: BLE001 - fail the joining rows, keep the running batch going
            logger.exception("prefill of %d rows failed", len(rows))
            for row in rows:
                self._fail(row, exc)
            return
        if self._batch is None or not self._active:
            self._batch, self._active = batch, list(rows)
        else:
            self._batch.join(batch)
            self._active.extend(rows)
        self._plans = None
        self._accept(rows, logits, offset=len(self._active) - len(rows))

    def _prefill_rows(self, rows: list[Row], state: GateState) -> tuple[KVBatch, torch.Tensor]:
        guard = self.runtime.guard
        gated = [r for r in rows if r.req.forced is None]
        decided = iter(guard.gate([r.req.prompt for r in gated], state) if gated else [])
        live = set(state.ids())
        for row in rows:
            p = row.req.params
            if row.req.forced is None:
                matched = list(next(decided))
                if row.req.steer:
                    GATE_DECISIONS.labels(result="open" if matched else "closed").inc()
            else:  # a set revoked since the first pass no longer steers
                matched = [m for m in row.req.forced if m.forget_set_id in live]
            row.matched = tuple(matched)
            row.vectors = state.vectors_by_layer(matched) if (row.req.steer and matched) else None
            if p.temperature > 0:
                seed = p.seed if p.seed is not None else secrets.randbits(63)
                row.generator = torch.Generator().manual_seed(seed)
            row.tracker = TextTracker(self._tok, p.stop, self._eos, p.max_new_tokens)
            if row.stream:
                row.post("gate", GateInfo(row.vectors is not None, row.matched))
        plans = build_plans([r.vectors for r in rows], len(rows))
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        with guard.hooks.steer(plans):
            return prefill(guard.model, [r.input_ids for r in rows], pad)

    def _accept(self, rows: list[Row], logits: torch.Tensor, offset: int = 0) -> None:
        """Sample one token per row, stream it, finish rows; ``rows`` sit at ``offset`` in the batch."""
        assert self._batch is not None
        params = [r.req.params for r in rows]
        if any(p.ignore_eos for p in params):
            logits = logits.clone()
            banned = torch.tensor(sorted(self._eos), dtype=torch.long)
            for i, p in enumerate(params):
                if p.ignore_eos:
                    logits[i, banned] = float("-inf")
        tokens = sample(logits, [p.temperature for p in params], [p.top_p for p in params],
                        [r.generator for r in rows])
        self._batch.last[offset:offset + len(rows)] = torch.tensor(tokens, dtype=torch.long)
        now = time.monotonic()
        for row, token in zip(rows, tokens, strict=True):
            assert row.tracker is not None
            finish = row.tracker.push(token)
            if finish is not None:
                self._close_row(row, finish, now)
            elif row.stream and (delta := row.tracker.delta(final=False)):
                row.post("delta", delta)
        self._drop_finished_rows()
        self._recheck_streams()

    def _recheck_streams(self) -> None:
        """Mid-stream answer re-check: a streamed row whose gate is closed is gated again on its
        prompt plus the text so far every ``STREAM_RECHECK_TOKENS`` tokens; once that opens, the row
        is steered from its next token on (what was streamed cannot be taken back)."""
        if not self.settings.answer_recheck:
            return
        due = [r for r in self._active if r.stream and r.req.steer and r.vectors is None and not r.done
               and r.tracker is not None and len(r.tracker.ids) - r.checked_at >= STREAM_RECHECK_TOKENS]
        state = self._seen_state
        if not due or state is None or state.empty:
            return
        for row in due:
            assert row.tracker is not None
            row.checked_at = len(row.tracker.ids)
        late = late_matches(self.runtime.guard, [r.req.prompt for r in due],
                            [r.tracker.text if r.tracker else "" for r in due], state)
        for row, matched in zip(due, late, strict=True):
            if matched:
                row.matched, row.rechecked = tuple(matched), True
                row.vectors = state.vectors_by_layer(matched)
                self._plans = None
                GATE_DECISIONS.labels(result="open_on_answer").inc()
                logger.info("request %s: gate opened on the streamed answer after %d tokens; steering from "
                            "the next token", row.req.request_id, row.checked_at)

    def _drop_finished_rows(self) -> None:
        now = time.monotonic()
        for row in self._active:
            if not row.done and (row.cancelled or now > row.deadline):
                self._close_row(row, "cancelled", now)
        keep = [i for i, row in enumerate(self._active) if not row.done]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[i] for i in keep]
        self._plans = None
        if not keep:
            self._batch = None
        elif self._batch is not None:
            self._batch.keep(keep)

    def _refresh_vectors(self, state: GateState) -> None:
        """Apply a new gate snapshot: a revoked set stops steering its rows from the next token."""
        if state is self._seen_state:
            return
        live = set(state.ids())
        for row in self._active:
            if row.req.steer and row.matched:
                still = [m for m in row.matched if m.forget_set_id in live]
                row.vectors = state.vectors_by_layer(still) if still else None
        self._seen_state, self._plans = state, None

    def _current_plans(self) -> dict[int, SteeringPlan]:
        if self._plans is None:
            self._plans = build_plans([r.vectors for r in self._active], len(self._active))
        return self._plans

    def _close_row(self, row: Row, finish: str, now: float) -> None:
        row.done = True
        if finish == "cancelled" and not row.cancelled:  # past its deadline
            self._fail(row, RequestTimeoutError(
                f"expected a result within {self.settings.request_timeout_s:g} s, found it still running"))
            return
        tracker = row.tracker
        ids = tuple(tracker.ids) if tracker is not None else ()
        if row.stream and tracker is not None and (delta := tracker.delta(final=True)):
            row.post("delta", delta)
        steered = row.req.steer and bool(row.matched)
        gen = Generation(tracker.text if tracker else "", finish, len(row.input_ids), len(ids), ids, steered,
                         row.matched, rechecked=steered and row.rechecked)
        GENERATED_TOKENS.inc(len(ids))
        latency = now - row.submitted
        self._latency_ewma = 0.8 * self._latency_ewma + 0.2 * latency
        logger.info("request %s route=%s finish=%s steered=%s prompt_tokens=%d tokens=%d latency=%.3fs",
                    row.req.request_id, row.req.route, finish, steered, gen.prompt_tokens, len(ids), latency)
        row.post("done", gen)

    def _fail(self, row: Row, exc: Exception) -> None:
        row.done = True
        logger.info("request %s route=%s failed: %s", row.req.request_id, row.req.route, type(exc).__name__)
        row.post("error", exc)
