"""The serving engine's worker (GUARD-IT, arXiv 2605.12765): one thread owns the model and runs the
continuous batch. Rows join at token boundaries (prefill), every row advances one token per decode
step, and each row carries its own steering vector, re-read from the gate snapshot at every step (a
revoked set stops steering running rows at their next token).

Admission (``admission``) feeds it; the answer policy (``policy``) reviews held streams
between tokens.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch

from service.engine.rows import RegistrySync, RowEnds, begin_row
from service.generation import EngineClosedError, Row
from service.metrics import BATCH_SIZE, GATE_DECISIONS
from steering import GateState, Generation
from steering.decoding import KVBatch, ban_eos, decode_step, prefill, row_generator, sample
from steering.gates import build_plans
from steering.guard import batch_plans
from steering.hooks import SteeringPlan

if TYPE_CHECKING:
    from service.engine.admission import Admission, EngineTokenizer
    from service.engine.policy import AnswerPolicy
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)


class BatchWorker:
    """The running batch and the loop that advances it (the worker thread's only code).

    Args:
        runtime: the model, its hooks, the gate snapshot and the registry to sync with.
        settings: ``max_batch_size``, ``sync_interval_s``, ``request_timeout_s``.
        admission: where new rows wait and requeued rows go back.
        policy: reviews held streams between tokens.
        tok: decodes the rows' text; pad and EOS ids.
    """

    def __init__(self, runtime: Runtime, settings: Settings, admission: Admission, policy: AnswerPolicy,
                 tok: EngineTokenizer) -> None:
        self.runtime = runtime
        self.settings = settings
        self.admission = admission
        self.policy = policy
        self.tok = tok
        #: rows in the batch, in the batch's row order
        self.active: list[Row] = []
        self._kv: KVBatch | None = None
        self._plans: dict[int, SteeringPlan] | None = None
        self._seen_state: GateState | None = None
        self._sync = RegistrySync(runtime, settings)
        self._ends = RowEnds(settings, admission)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until told to stop; then fail what is left with ``EngineClosedError``."""
        with torch.inference_mode():
            while self.admission.wait_for_work(len(self.active)):
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - fail this batch, keep serving
                    logger.exception("generation step failed; failing %d rows", len(self.active))
                    for row in self.active:
                        self.fail(row, exc)
                    self.active, self._kv, self._plans = [], None, None
        self.admission.run_chores()  # handed over before the stop: their callers are waiting
        for row in [*self.active, *self.admission.drain()]:
            self.fail(row, EngineClosedError("expected the request to finish, found the server shutting down"))
        self.active, self._kv = [], None

    def step(self) -> None:
        """One token boundary: the event loop's chores (answer checks), sync, drop finished rows, admit
        and prefill new ones, one decode step."""
        self.admission.run_chores()
        self._sync.maybe_sync()
        self._drop_finished_rows()
        state = self.runtime.guard.state  # one snapshot per step for running and joining rows
        self._refresh_vectors(state)
        new = self._admit()
        if new:
            self._prefill(new, state)
        if self._kv is not None and self.active:
            rows = list(self.active)
            BATCH_SIZE.observe(len(rows))
            with self.runtime.guard.hooks.steer(self._current_plans()):
                logits = decode_step(self.runtime.guard.model, self._kv)
            self._accept(rows, logits)

    def _admit(self) -> list[Row]:
        now = time.monotonic()
        room = self.settings.max_batch_size - len(self.active)
        if self._kv is not None and not self._kv.mergeable:
            room = 0  # this model's cache cannot take rows mid-flight: join at batch boundaries
        new, dropped = self.admission.take(room, now)
        for row in dropped:
            self._close_row(row, "cancelled", now)
        return new

    # -- joining rows ------------------------------------------------------------------------------
    def _prefill(self, rows: list[Row], state: GateState) -> None:
        try:
            kv, logits = self._prefill_rows(rows, state)
        except Exception as exc:  # noqa: BLE001 - fail the joining rows, keep the running batch going
            logger.exception("prefill of %d rows failed", len(rows))
            for row in rows:
                self.fail(row, exc)
            return
        if self._kv is None or not self.active:
            self._kv, self.active = kv, list(rows)
        else:
            self._kv.join(kv)
            self.active.extend(rows)
        self._plans = None
        self._accept(rows, logits, offset=len(self.active) - len(rows))

    def _prefill_rows(self, rows: list[Row], state: GateState) -> tuple[KVBatch, torch.Tensor]:
        guard = self.runtime.guard
        plans = guard.plan([r.req.prompt for r in rows], state, steer=[r.req.steer for r in rows],
                           forced=[r.req.forced for r in rows], boost=[r.req.boost for r in rows])
        for row, plan in zip(rows, plans, strict=True):
            p = row.req.params
            if row.req.forced is None and row.req.steer:
                GATE_DECISIONS.labels(result="open" if plan.matched else "closed").inc()
            row.generator = row_generator(p.temperature, p.seed)
            begin_row(row, plan, self.tok)
        with guard.hooks.steer(batch_plans(plans)):
            return prefill(guard.model, [r.input_ids + r.prefix_ids for r in rows], self.tok.pad_id)

    # -- one token per row -------------------------------------------------------------------------
    def _accept(self, rows: list[Row], logits: torch.Tensor, offset: int = 0) -> None:
        """Sample one token per row, stream what the answer policy has passed, finish rows; ``rows``
        sit at ``offset`` in the batch."""
        assert self._kv is not None
        params = [r.req.params for r in rows]
        logits = ban_eos(logits, [p.ignore_eos for p in params], self.tok.eos)
        tokens = sample(logits, [p.temperature for p in params], [p.top_p for p in params],
                        [r.generator for r in rows])
        self._kv.last[offset:offset + len(rows)] = torch.tensor(tokens, dtype=torch.long)
        now = time.monotonic()
        for row, token in zip(rows, tokens, strict=True):
            tracker = row.tracker
            assert tracker is not None
            finish = tracker.push(token)
            held = row.stream and self.policy.holds(row, self._seen_state)
            if held and (finish is not None or self.policy.due(row)):
                assert self._seen_state is not None
                step, reason = self.policy.review_stream(row, self._seen_state, final=finish is not None)
                if step == "abstain":
                    self.finish(row, self.policy.stream_abstention(row, reason), now)
                if step != "go":
                    continue  # generating again from what was sent, or abstained
            if finish is not None:
                self._close_row(row, finish, now)
            elif row.stream:
                if not held:  # nothing to protect: all of it passes
                    row.ok_count, row.released = len(tracker.ids), len(tracker.text)
                if delta := tracker.delta(final=False, upto=row.released):
                    row.post("delta", delta)
        self._drop_finished_rows()

    # -- leaving rows ------------------------------------------------------------------------------
    def _drop_finished_rows(self) -> None:
        now = time.monotonic()
        for row in self.active:
            if not row.done and (row.cancelled or now > row.deadline):
                self._close_row(row, "cancelled", now)
        keep = [i for i, row in enumerate(self.active) if not (row.done or row.requeue)]
        if len(keep) == len(self.active):
            return
        again = [row for row in self.active if row.requeue and not row.done]
        self.active = [self.active[i] for i in keep]
        self._plans = None
        if not keep:
            self._kv = None
        elif self._kv is not None:
            self._kv.keep(keep)
        if again:  # first in line: they were running already
            self.admission.requeue_first(again)

    # -- steering ----------------------------------------------------------------------------------
    def _refresh_vectors(self, state: GateState) -> None:
        """Apply a new gate snapshot: a revoked set stops steering its rows from the next token."""
        if state is self._seen_state:
            return
        live = set(state.ids())
        for row in self.active:
            if row.req.steer and row.matched:
                still = [m for m in row.matched if m.forget_set_id in live]
                row.vectors = state.vectors_by_layer(still, boost=row.req.boost) if still else None
        self._seen_state, self._plans = state, None

    def _current_plans(self) -> dict[int, SteeringPlan]:
        if self._plans is None:
            self._plans = build_plans([r.vectors for r in self.active], len(self.active))
        return self._plans

    # -- results -----------------------------------------------------------------------------------
    def _close_row(self, row: Row, finish: str, now: float) -> None:
        self._ends.close(row, finish, now)

    def finish(self, row: Row, gen: Generation, now: float) -> None:
        """Hand the row's final ``Generation`` to its caller; count and log it."""
        self._ends.finish(row, gen, now)

    def fail(self, row: Row, exc: Exception) -> None:
        """End the row with ``exc`` (raised in its caller)."""
        self._ends.fail(row, exc)
