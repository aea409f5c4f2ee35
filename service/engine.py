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
from service.metrics import ABSTENTIONS, BATCH_SIZE, GATE_DECISIONS, GENERATED_TOKENS, QUEUE_DEPTH
from steering import ConfigError, GateMatch, GateState, Generation
from steering.decoding import KVBatch, TextTracker, ban_eos, decode_step, prefill, row_generator, sample
from steering.forget_set import chat_prompt
from steering.gates import build_plans
from steering.guard import batch_plans, eos_ids
from steering.hooks import SteeringPlan
from steering.recheck import Verdict, abstained, review

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)

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
            # A private tokenizer copy: fast tokenizers are not safe to share with the
            # forget-set builder thread, which pads (mutates) the runtime's tokenizer.
            self._tok = copy.deepcopy(guard.tokenizer)
            self._eos = eos_ids(self._tok)
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
        return self._enqueue([(req, self._tokenize(req))], stream=stream)[0]

    async def submit_async(self, req: GenerationRequest, *, stream: bool = False) -> RequestHandle:
        """``submit`` with the tokenization off the event loop (a long prompt never stalls the server)."""
        ids = await asyncio.to_thread(self._tokenize, req)
        return self._enqueue([(req, ids)], stream=stream)[0]

    async def generate(self, req: GenerationRequest) -> Generation:
        """One generation under the answer policy (``steering.recheck``): steered by every active forget
        set the prompt opens, re-checked, and replaced by the neutral answer rather than leak."""
        return await self._review(req, await self._await(await self.submit_async(req)))

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
        return await self._review(arms[0], steered), unsteered

    async def _review(self, req: GenerationRequest, gen: Generation) -> Generation:
        """Act on the answer policy's verdicts (``steering.recheck.review``) until one accepts: steer
        again, escalate, or abstain. Rows that stay closed keep the base model's answer bit for bit.
        Streams are reviewed while they run instead (``_review_stream_row``)."""
        for attempt in range(3):  # steer, escalate, abstain: at most two more generations
            if not self._policy_applies(req, gen):
                return gen
            state = self.runtime.guard.state
            verdict = await asyncio.to_thread(self._verdict, req, gen.text, state, gen.steered, gen.boost,
                                              gen.matched, True)
            if verdict.action == "accept":
                return gen
            if verdict.action == "abstain" or attempt == 2:
                return self._abstain(req, gen, verdict.reason or "leak_after_escalation")
            self._count_verdict(req, verdict)
            again = await self._await(await self.submit_async(
                replace(req, forced=verdict.matches, boost=verdict.boost)))
            gen = replace(again, rechecked=gen.rechecked or (verdict.action == "steer" and again.steered))
        return gen

    def _policy_applies(self, req: GenerationRequest, gen: Generation) -> bool:
        s = self.settings
        return (req.steer and (s.answer_recheck or s.leak_check) and gen.finish_reason != "cancelled"
                and not gen.abstained and not self.runtime.guard.state.empty)

    def _verdict(self, req: GenerationRequest, text: str, state: GateState, steered: bool, boost: float,
                 matched: Sequence[GateMatch], final: bool) -> Verdict:
        return review(self.runtime.guard, state, req.prompt, text, steered=steered, boost=boost,
                      matched=matched, recheck=self.settings.answer_recheck, leak_check=self.settings.leak_check,
                      final=final)

    def _count_verdict(self, req: GenerationRequest, verdict: Verdict) -> None:
        result = "open_on_answer" if verdict.reason == "gate_on_answer" else (
            "escalated" if verdict.action == "escalate" else "open_on_leak")
        GATE_DECISIONS.labels(result=result).inc()
        logger.info("request %s: answer policy %s (%s, %d clusters)", req.request_id, verdict.action,
                    verdict.reason, len(verdict.matches))

    def _abstain(self, req: GenerationRequest, gen: Generation, reason: str) -> Generation:
        ABSTENTIONS.labels(reason=reason).inc()
        logger.info("request %s: abstained (%s)", req.request_id, reason)
        with self._tok_lock:
            return abstained(gen, self.settings.abstain_text, reason, self._tok)

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
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        with self._cv:
            if not self._accepting:
                raise EngineClosedError("expected a running engine, found it shutting down")
            if len(self._queue) + len(prepared) > self.settings.queue_size:
                raise QueueFullError(f"expected a free queue slot, found {len(self._queue)} requests queued",
                                     retry_after=self._retry_after())
            rows = [Row(req, ids, loop, asyncio.Queue(), stream, now, now + self.settings.request_timeout_s)
                    for req, ids in prepared]
            self._queue.extend(rows)
            QUEUE_DEPTH.set(len(self._queue))
            self._cv.notify_all()
        return [RequestHandle(row, self._wake) for row in rows]

    def _tokenize(self, req: GenerationRequest) -> list[int]:
        self.start()  # the engine's own tokenizer copy is made there
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
        plans = guard.plan([r.req.prompt for r in rows], state, steer=[r.req.steer for r in rows],
                           forced=[r.req.forced for r in rows], boost=[r.req.boost for r in rows])
        for row, plan in zip(rows, plans, strict=True):
            p = row.req.params
            if row.req.forced is None and row.req.steer:
                GATE_DECISIONS.labels(result="open" if plan.matched else "closed").inc()
            row.matched, row.vectors = plan.matched, plan.vectors
            row.generator = row_generator(p.temperature, p.seed)
            row.tracker = TextTracker(self._tok, p.stop, self._eos, p.max_new_tokens, prefix=row.prefix_text,
                                      prefix_tokens=len(row.prefix_ids), emitted=row.emitted)
            row.checked_ids, row.ok_count, row.released = 0, 0, len(row.prefix_text)
            if row.stream and not row.gate_posted:
                row.gate_posted = True
                row.post("gate", GateInfo(row.vectors is not None, row.matched))
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        with guard.hooks.steer(batch_plans(plans)):
            return prefill(guard.model, [r.input_ids + r.prefix_ids for r in rows], pad)

    def _accept(self, rows: list[Row], logits: torch.Tensor, offset: int = 0) -> None:
        """Sample one token per row, stream what the answer policy has passed, finish rows; ``rows``
        sit at ``offset`` in the batch."""
        assert self._batch is not None
        params = [r.req.params for r in rows]
        logits = ban_eos(logits, [p.ignore_eos for p in params], self._eos)
        tokens = sample(logits, [p.temperature for p in params], [p.top_p for p in params],
                        [r.generator for r in rows])
        self._batch.last[offset:offset + len(rows)] = torch.tensor(tokens, dtype=torch.long)
        now = time.monotonic()
        for row, token in zip(rows, tokens, strict=True):
            tracker = row.tracker
            assert tracker is not None
            finish = tracker.push(token)
            held = row.stream and self._holds(row)
            due = len(tracker.ids) - row.checked_ids >= self.settings.stream_holdback_tokens
            if held and (finish is not None or due):
                if not self._review_stream_row(row, final=finish is not None, now=now):
                    continue  # generating again from what was sent, or abstained
            if finish is not None:
                self._close_row(row, finish, now)
            elif row.stream:
                if not held:  # nothing to protect: all of it passes
                    row.ok_count, row.released = len(tracker.ids), len(tracker.text)
                if delta := tracker.delta(final=False, upto=row.released):
                    row.post("delta", delta)
        self._drop_finished_rows()

    def _holds(self, row: Row) -> bool:
        """Whether a stream's tokens wait for the answer policy (only while a forget set is active)."""
        s, state = self.settings, self._seen_state
        return row.req.steer and (s.answer_recheck or s.leak_check) and state is not None and not state.empty

    def _review_stream_row(self, row: Row, *, final: bool, now: float) -> bool:
        """The answer policy on a stream's text so far; True lets the row go on (and releases the text).

        On ``steer`` or ``escalate`` the row leaves the batch and starts again, steered, from the text
        already sent (``prefix_ids``): nothing unchecked was sent, so nothing is taken back. On
        ``abstain`` the stream ends (with the neutral answer when nothing was sent yet).
        """
        tracker, state = row.tracker, self._seen_state
        assert tracker is not None and state is not None
        verdict = self._verdict(row.req, tracker.text, state, row.vectors is not None, row.req.boost,
                                row.matched, final)
        row.checked_ids = len(tracker.ids)
        if verdict.action == "accept":
            row.ok_count, row.released = len(tracker.ids), len(tracker.text)
            return True
        if verdict.action == "abstain" or row.restarts >= 2:
            self._close_abstained(row, verdict.reason or "leak_after_escalation", now)
            return False
        self._count_verdict(row.req, verdict)
        row.req = replace(row.req, forced=verdict.matches, boost=verdict.boost)
        row.prefix_ids = [*row.prefix_ids, *tracker.ids[:row.ok_count]]
        row.prefix_text = tracker.text[:row.released]
        row.emitted, row.restarts, row.requeue = tracker.emitted, row.restarts + 1, True
        row.rechecked = row.rechecked or verdict.action == "steer"
        return False

    def _close_abstained(self, row: Row, reason: str, now: float) -> None:
        """End a stream with the neutral answer (or, once text was sent, with what was sent)."""
        tracker = row.tracker
        assert tracker is not None
        row.done = True
        ABSTENTIONS.labels(reason=reason).inc()
        sent = tracker.text[:tracker.emitted]
        text = sent if sent.strip() else self.settings.abstain_text
        if not sent.strip():
            row.post("delta", text)
        with self._tok_lock:
            ids = tuple(self._tok.encode(text, add_special_tokens=False))
        gen = Generation(text, "stop", len(row.input_ids), len(ids), ids, True, row.matched,
                         rechecked=row.rechecked, abstained=True, abstain_reason=reason, boost=row.req.boost)
        logger.info("request %s route=%s: stream abstained (%s)", row.req.request_id, row.req.route, reason)
        self._finish_row(row, gen, now)

    def _drop_finished_rows(self) -> None:
        now = time.monotonic()
        for row in self._active:
            if not row.done and (row.cancelled or now > row.deadline):
                self._close_row(row, "cancelled", now)
        keep = [i for i, row in enumerate(self._active) if not (row.done or row.requeue)]
        if len(keep) == len(self._active):
            return
        again = [row for row in self._active if row.requeue and not row.done]
        self._active = [self._active[i] for i in keep]
        self._plans = None
        if not keep:
            self._batch = None
        elif self._batch is not None:
            self._batch.keep(keep)
        if again:
            with self._cv:
                for row in reversed(again):  # first in line: they were running already
                    row.requeue = False
                    self._queue.appendleft(row)
                QUEUE_DEPTH.set(len(self._queue))

    def _refresh_vectors(self, state: GateState) -> None:
        """Apply a new gate snapshot: a revoked set stops steering its rows from the next token."""
        if state is self._seen_state:
            return
        live = set(state.ids())
        for row in self._active:
            if row.req.steer and row.matched:
                still = [m for m in row.matched if m.forget_set_id in live]
                row.vectors = state.vectors_by_layer(still, boost=row.req.boost) if still else None
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
        ids = (*row.prefix_ids, *(tracker.ids if tracker is not None else ()))
        if row.stream and tracker is not None and (delta := tracker.delta(final=True)):
            row.post("delta", delta)
        steered = row.req.steer and bool(row.matched)
        gen = Generation(tracker.text if tracker else "", finish, len(row.input_ids), len(ids), ids, steered,
                         row.matched, rechecked=steered and row.rechecked, boost=row.req.boost if steered else 0.0)
        self._finish_row(row, gen, now)

    def _finish_row(self, row: Row, gen: Generation, now: float) -> None:
        GENERATED_TOKENS.inc(gen.completion_tokens)
        latency = now - row.submitted
        self._latency_ewma = 0.8 * self._latency_ewma + 0.2 * latency
        logger.info("request %s route=%s finish=%s steered=%s prompt_tokens=%d tokens=%d latency=%.3fs",
                    row.req.request_id, row.req.route, gen.finish_reason, gen.steered, gen.prompt_tokens,
                    gen.completion_tokens, latency)
        row.post("done", gen)

    def _fail(self, row: Row, exc: Exception) -> None:
        row.done = True
        logger.info("request %s route=%s failed: %s", row.req.request_id, row.req.route, type(exc).__name__)
        row.post("error", exc)
