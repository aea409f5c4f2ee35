"""The vLLM engine (``GUARDIT_ENGINE=vllm``): GUARD-IT (arXiv 2605.12765) with generation in vLLM.

Everything before and after the model is the native engine's (``service.engine.Engine``, subclassed, and
its parts): validation, tokenization and the queue bound (``Admission``), the gate (``Guard.plan``), the
answer policy with its leak check, stream hold-back and restarts, abstention (``AnswerPolicy``), how rows
end (``RowEnds``) and the registry sync (``RegistrySync``). Only the token loop differs: each request runs
in vLLM's ``AsyncLLM``, and the steering decision travels to vLLM's workers as a key into a table of
vectors kept there (``steering.vllm_steer``), re-sent whenever the gate snapshot changes, so revoking a
set stops steering at the next step of running requests. vLLM is imported only here, lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.engine import Engine
from service.engine.admission import EngineTokenizer
from service.engine.policy import AnswerPolicy
from service.engine.rows import RegistrySync, RowEnds, begin_row
from service.generation import GenerationRequest, RequestHandle, Row
from service.metrics import GATE_DECISIONS
from steering import GateMatch, GateState
from steering.guard import RowPlan
from steering.loading import resolve_model
from steering.recheck import Verdict
from steering.vllm_steer import STEER_KEY, WireTable, encode_vectors

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["VllmEngine", "decision_key", "engine_for", "model_dir"]

#: The worker extension class vLLM mixes into its workers (a dotted path: the workers import it).
WORKER_EXTENSION = "steering.vllm_steer.GuardItWorkerExtension"


def decision_key(matches: tuple[GateMatch, ...], boost: float) -> str:
    """A steered request's key in the worker table: its open clusters and escalation (stable while it runs)."""
    parts = sorted(f"{m.forget_set_id}:{m.cluster}" for m in matches)
    return hashlib.sha256(("|".join(parts) + f"|boost={boost!r}").encode()).hexdigest()[:24]


def cache_salt(wire: dict[int, bytes]) -> str:
    """vLLM ``cache_salt`` for a steered prompt: a digest of the exact vectors applied, so its KV blocks
    are shared only with requests steered identically, never with unsteered ones (which carry no salt)."""
    digest = hashlib.sha256()
    for layer in sorted(wire):
        digest.update(f"{layer}:".encode())
        digest.update(wire[layer])
    return "guardit-" + digest.hexdigest()[:32]


def model_dir(settings: Settings, model_id: str) -> Path:
    """The Hugging Face folder vLLM loads: the converted safetensors of a GGUF, or the model dir itself."""
    source = resolve_model(settings.model)
    return settings.model_cache_dir / model_id if source.kind == "gguf" else Path(source.path)


def engine_for(runtime: Runtime, settings: Settings) -> Engine:
    """The engine ``settings.engine`` names (not started): the server and the local CLI pick it here."""
    return VllmEngine(runtime, settings) if settings.engine == "vllm" else Engine(runtime, settings)


class VllmEngine(Engine):
    """The native engine's front end over vLLM's ``AsyncLLM`` (one vLLM request per attempt of a row).

    Args:
        runtime: the loaded model (gate, answer policy, builds), registry and gate snapshot.
        settings: as for ``Engine`` (``max_batch_size`` is vLLM's ``max_num_seqs``), plus
            ``tensor_parallel_size`` and ``kv_cache_gib``.
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        super().__init__(runtime, settings)
        self._llm: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: rows in flight by serial (compare's two arms share a request id)
        self._rows: dict[int, Row] = {}
        self._serial = itertools.count()
        #: key -> (open clusters, boost) of every steered decision in flight; the worker table follows it
        self._decisions: dict[str, tuple[tuple[GateMatch, ...], float]] = {}
        self._users: dict[str, int] = {}
        self._pushed: tuple[GateState, frozenset[str]] | None = None
        self._wire: WireTable = {}
        self._push_lock: asyncio.Lock | None = None
        self._syncer: asyncio.Task[None] | None = None
        #: the gate snapshot whose table the workers hold (streams are held back while it has sets)
        self._seen_state: GateState | None = None
        self._sync = RegistrySync(runtime, settings)
        self._ends = RowEnds(settings, self._admission)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot in vLLM's scheduler (beyond ``max_num_seqs`` = ``max_batch_size``)."""
        return max(0, len(self._rows) - self.settings.max_batch_size)

    @property
    def active_rows(self) -> int:
        """Requests running in vLLM."""
        return min(len(self._rows), self.settings.max_batch_size)

    @property
    def running(self) -> bool:
        """True once vLLM is up and accepting."""
        return self._llm is not None and self._admission.accepting

    def start(self) -> None:
        """Start vLLM (it spawns an engine-core and a worker process: about a minute) if not yet; idempotent."""
        with self._start_lock:
            if self._llm is not None:
                return
            self._tok = EngineTokenizer(self.runtime.guard.tokenizer)
            # No worker thread here: the whole-answer checks run in a thread of their own.
            self._policy = AnswerPolicy(self.runtime, self.settings, self._tok, _in_thread)
            self._llm = self._new_llm()

    def _new_llm(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        s, rt = self.settings, self.runtime
        rt.guard  # noqa: B018 - converts an embedded GGUF to the safetensors folder vLLM reads
        args = AsyncEngineArgs(
            model=str(model_dir(s, rt.model_id)), dtype=str(rt.dtype).removeprefix("torch."), seed=0,
            tensor_parallel_size=s.tensor_parallel_size, max_num_seqs=s.max_batch_size,
            max_model_len=s.max_prompt_tokens + s.max_new_tokens,
            # Hooks must run as Python each step (a compiled or captured graph would freeze them).
            enforce_eager=True, enable_prefix_caching=True, worker_extension_cls=WORKER_EXTENSION,
            kv_cache_memory_bytes=int(s.kv_cache_gib * (1 << 30)),
            disable_log_stats=True)
        logger.info("starting vLLM on %s (%s, tensor parallel %d)", args.model, args.dtype, s.tensor_parallel_size)
        return AsyncLLM.from_engine_args(args)

    def close(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, wait up to ``drain_timeout`` for running requests, then stop vLLM."""
        self._admission.stop_accepting()
        deadline = time.monotonic() + drain_timeout
        while self._rows and time.monotonic() < deadline:
            time.sleep(0.02)
        for row in list(self._rows.values()):
            row.cancelled = True
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()

    async def shutdown(self, drain_timeout: float = 30.0) -> None:
        """``close`` without blocking the event loop."""
        if self._syncer is not None:
            self._syncer.cancel()
        await asyncio.to_thread(self.close, drain_timeout)

    # -- submission ---------------------------------------------------------------------------
    def _enqueue(self, prepared: Sequence[tuple[GenerationRequest, list[int]]], *,
                 stream: bool) -> list[RequestHandle]:
        self.start()
        rows = self._admission.admit(prepared, stream=stream, waiting=self.queue_depth, running=self.active_rows)
        loop = asyncio.get_running_loop()
        if self._push_lock is None:
            self._push_lock = asyncio.Lock()
            self._syncer = loop.create_task(self._sync_loop())
        handles = []
        for row in rows:
            serial = next(self._serial)
            self._rows[serial] = row
            task = loop.create_task(self._drive(row, serial))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            handles.append(RequestHandle(row, lambda: None))
        return handles

    async def _sync_loop(self) -> None:
        """Follow the registry (every ``sync_interval_s``) and re-send the worker table as soon as the gate
        snapshot changes (a revocation in this process reaches running requests within a tick)."""
        while True:
            await asyncio.sleep(min(0.05, self.settings.sync_interval_s))
            try:
                await asyncio.to_thread(self._sync.maybe_sync)
                await self._push()
            except Exception:  # noqa: BLE001 - keep following; requests fall back to the last table
                logger.warning("steering table refresh failed", exc_info=True)

    async def _push(self) -> None:
        """Send the table for every decision in flight under the current snapshot, when the snapshot
        changed or a decision is new. A finished decision alone does not send one: its key stays in the
        workers (no request carries it) until the next table, which saves an RPC, and so a pause of
        vLLM's step loop, per finished row."""
        assert self._push_lock is not None
        async with self._push_lock:
            state = self.runtime.guard.state
            keys = frozenset(self._decisions)
            if self._pushed is not None and self._pushed[0] is state and keys <= self._pushed[1]:
                return
            live = set(state.ids())
            wire: WireTable = {}
            for key, (matches, boost) in self._decisions.items():
                still = [m for m in matches if m.forget_set_id in live]
                vectors = state.vectors_by_layer(still, boost=boost) if still else {}
                if vectors:
                    wire[key] = encode_vectors(vectors)
            if wire != self._wire:
                await self._llm.collective_rpc("guardit_set_table", args=(wire,))
            self._pushed, self._wire, self._seen_state = (state, keys), wire, state

    # -- one row --------------------------------------------------------------------------------
    def _plan(self, row: Row, state: GateState) -> RowPlan:
        req = row.req
        plan = self.runtime.guard.plan([req.prompt], state, steer=[req.steer], forced=[req.forced],
                                       boost=[req.boost])[0]
        if req.forced is None and req.steer:
            GATE_DECISIONS.labels(result="open" if plan.matched else "closed").inc()
        return plan

    async def _drive(self, row: Row, serial: int) -> None:
        """Run one row to its end: attempts in vLLM, hold-back reviews and restarts as the native worker does."""
        key: str | None = None
        try:
            while True:
                state = self.runtime.guard.state
                plan = await asyncio.to_thread(self._plan, row, state)
                self._begin(row, plan)
                key = await self._claim(plan, row.req.boost, key)
                await self._attempt(row, key, f"{row.req.request_id}-{serial}-{row.restarts}")
                if row.done or not row.requeue:
                    return
                row.requeue = False
        except Exception as exc:  # noqa: BLE001 - fail this row, keep serving
            logger.exception("vLLM generation failed for request %s", row.req.request_id)
            if not row.done:
                self._ends.fail(row, exc)
        finally:
            self._release(key)
            self._rows.pop(serial, None)

    def _begin(self, row: Row, plan: RowPlan) -> None:
        assert self._tok is not None
        begin_row(row, plan, self._tok)

    async def _claim(self, plan: RowPlan, boost: float, old: str | None) -> str | None:
        """Register the row's decision so the worker table holds its vector; returns its key."""
        self._release(old)
        if not plan.steered:
            await self._push()  # the snapshot may have changed: running rows follow it too
            return None
        key = decision_key(plan.matched, boost)
        self._decisions[key] = (plan.matched, boost)
        self._users[key] = self._users.get(key, 0) + 1
        await self._push()
        return key

    def _release(self, key: str | None) -> None:
        if key is None:
            return
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key], self._decisions[key]  # the next push drops it from the workers

    async def _attempt(self, row: Row, key: str | None, request_id: str) -> None:
        """One vLLM request from the prompt plus the text already passed; each token as the native worker's."""
        tracker = row.tracker
        assert tracker is not None
        finish: str | None = None
        async with contextlib.aclosing(self._tokens(row, key, request_id)) as stream:
            async for tokens, vllm_finish in stream:
                now = time.monotonic()
                if row.cancelled or now > row.deadline:
                    self._ends.close(row, "cancelled", now)
                    return
                for token in tokens:
                    finish = tracker.push(token)
                    self._after_token(row, finish, now)
                    if row.done or row.requeue:
                        return
                if vllm_finish is not None and finish is None:
                    # vLLM ended first (EOS it knows, the length limit): the same finish, judged once more.
                    finish = "length" if vllm_finish == "length" else "stop"
                    tracker.finish_reason = finish
                    self._after_token(row, finish, now)
                    return
        if not row.done and not row.requeue:
            self._ends.close(row, finish or "stop", time.monotonic())

    def _after_token(self, row: Row, finish: str | None, now: float) -> None:
        """The native worker's per-token step for one row (``BatchWorker._accept``): hold-back review,
        finish, stream delta."""
        tracker, policy = row.tracker, self._policy
        assert tracker is not None and policy is not None
        held = row.stream and policy.holds(row, self._seen_state)
        if held and (finish is not None or policy.due(row)):
            assert self._seen_state is not None
            step, reason = policy.review_stream(row, self._seen_state, final=finish is not None)
            if step == "abstain":
                self._ends.finish(row, policy.stream_abstention(row, reason), now)
            if step != "go":
                return  # generating again from what was sent, or abstained
        if finish is not None:
            self._ends.close(row, finish, now)
        elif row.stream:
            if not held:
                row.ok_count, row.released = len(tracker.ids), len(tracker.text)
            if delta := tracker.delta(final=False, upto=row.released):
                row.post("delta", delta)

    async def _tokens(self, row: Row, key: str | None,
                      request_id: str) -> AsyncGenerator[tuple[list[int], str | None], None]:
        """New token ids of the row's vLLM request as they come, and vLLM's finish reason at the end."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        assert self._tok is not None
        eos = sorted(self._tok.eos)
        p = row.req.params
        left = p.max_new_tokens - len(row.prefix_ids)
        params = SamplingParams(
            n=1, max_tokens=max(1, left), temperature=p.temperature, top_p=p.top_p, seed=p.seed,
            # ignore_eos: EOS is banned, as the native engine does (vLLM's own flag would emit it and go on).
            stop=list(p.stop) or None, stop_token_ids=None if p.ignore_eos else eos,
            logit_bias=dict.fromkeys(eos, -100.0) if p.ignore_eos else None,
            skip_special_tokens=True,
            extra_args={STEER_KEY: key} if key is not None else None)
        prompt = TokensPrompt(prompt_token_ids=[*row.input_ids, *row.prefix_ids])
        if key is not None and key in self._wire:
            prompt["cache_salt"] = cache_salt(self._wire[key])
        seen, finished = 0, False
        try:
            async with contextlib.aclosing(self._llm.generate(prompt, params, request_id)) as outs:
                async for out in outs:
                    done = out.outputs[0]
                    ids = list(done.token_ids)
                    new, seen, finished = ids[seen:], len(ids), out.finished
                    yield new, done.finish_reason if finished else None
        finally:
            if not finished and self._llm is not None:  # left early (stop, review, cancel): free its slot
                await self._llm.abort(request_id)


def _in_thread(fn: Callable[[], Verdict]) -> Awaitable[Verdict]:
    """Run an answer check off the event loop (the native engine runs it on its worker thread)."""
    return asyncio.to_thread(fn)
