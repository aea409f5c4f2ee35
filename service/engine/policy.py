"""The answer policy as the serving engine applies it (``steering.recheck``, our addition to GUARD-IT,
arXiv 2605.12765): whole answers are reviewed after they finish, streams while they run, in parts of
``stream_holdback_tokens``; a verdict steers again, escalates or abstains.

``steering.recheck.review`` decides; this module acts on the verdicts, counts them and logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Literal

from service.generation import GenerationRequest, Row
from service.metrics import ABSTENTIONS, GATE_DECISIONS
from steering import GateMatch, GateState, Generation
from steering.recheck import Verdict, abstained, review

if TYPE_CHECKING:
    from service.engine.admission import EngineTokenizer
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)

#: What a reviewed stream does next: send the text checked so far and go on, start again steered
#: from the text already sent, or end with the neutral answer.
StreamStep = Literal["go", "restart", "abstain"]

#: Generates a request again and returns its answer (the engine's own submit-and-await).
Regenerate = Callable[[GenerationRequest], Awaitable[Generation]]
#: Runs a check on the engine's worker thread between decode steps (``Admission.on_worker``).
OnWorker = Callable[[Callable[[], Verdict]], Awaitable[Verdict]]


class AnswerPolicy:
    """Reviews answers before they leave and acts on the verdicts.

    Args:
        runtime: the guarded model (its embedder gates answers) and the gate snapshot.
        settings: ``answer_recheck``, ``leak_check``, ``abstain_text``, ``stream_holdback_tokens``.
        tok: the engine's tokenizer (the neutral answer's token ids).
        on_worker: where whole-answer checks run (the worker thread, taking turns with the model).
    """

    def __init__(self, runtime: Runtime, settings: Settings, tok: EngineTokenizer, on_worker: OnWorker) -> None:
        self.runtime = runtime
        self.settings = settings
        self.tok = tok
        self._on_worker = on_worker

    @property
    def enabled(self) -> bool:
        """Whether any check runs (either switch on)."""
        return self.settings.answer_recheck or self.settings.leak_check

    # -- whole answers (event-loop side) -----------------------------------------------------------
    def applies(self, req: GenerationRequest, gen: Generation) -> bool:
        """Whether ``gen`` must be reviewed: a steerable request, a finished answer, a set active."""
        return (req.steer and self.enabled and gen.finish_reason != "cancelled" and not gen.abstained
                and not self.runtime.guard.state.empty)

    async def review(self, req: GenerationRequest, gen: Generation, regenerate: Regenerate) -> Generation:
        """Act on the verdicts until one accepts: steer again, escalate, or abstain. Rows that stay
        closed keep the base model's answer bit for bit. Streams are reviewed while they run instead
        (``review_stream``)."""
        for attempt in range(3):  # steer, escalate, abstain: at most two more generations
            if not self.applies(req, gen):
                return gen
            state = self.runtime.guard.state
            verdict = await self._on_worker(partial(self.verdict, req, gen.text, state, gen.steered, gen.boost,
                                                    gen.matched, True))
            if verdict.action == "accept":
                return gen
            if verdict.action == "abstain" or attempt == 2:
                return self.abstain(req, gen, verdict.reason or "leak_after_escalation")
            self.count(req, verdict)
            again = await regenerate(replace(req, forced=verdict.matches, boost=verdict.boost))
            gen = replace(again, rechecked=gen.rechecked or (verdict.action == "steer" and again.steered))
        return gen

    def verdict(self, req: GenerationRequest, text: str, state: GateState, steered: bool, boost: float,
                matched: Sequence[GateMatch], final: bool) -> Verdict:
        """``steering.recheck.review`` with this server's switches."""
        return review(self.runtime.guard, state, req.prompt, text, steered=steered, boost=boost,
                      matched=matched, recheck=self.settings.answer_recheck, leak_check=self.settings.leak_check,
                      final=final)

    def count(self, req: GenerationRequest, verdict: Verdict) -> None:
        """Count and log a verdict that generates again."""
        result = "open_on_answer" if verdict.reason == "gate_on_answer" else (
            "escalated" if verdict.action == "escalate" else "open_on_leak")
        GATE_DECISIONS.labels(result=result).inc()
        logger.info("request %s: answer policy %s (%s, %d clusters)", req.request_id, verdict.action,
                    verdict.reason, len(verdict.matches))

    def abstain(self, req: GenerationRequest, gen: Generation, reason: str) -> Generation:
        """``gen`` replaced by the neutral answer."""
        ABSTENTIONS.labels(reason=reason).inc()
        logger.info("request %s: abstained (%s)", req.request_id, reason)
        with self.tok.lock:
            return abstained(gen, self.settings.abstain_text, reason, self.tok.tokenizer)

    # -- streams (worker side) ---------------------------------------------------------------------
    def holds(self, row: Row, state: GateState | None) -> bool:
        """Whether a stream's tokens wait for the policy (only while a forget set is active)."""
        return row.req.steer and self.enabled and state is not None and not state.empty

    def due(self, row: Row) -> bool:
        """Whether a held stream has ``stream_holdback_tokens`` unchecked tokens."""
        assert row.tracker is not None
        return len(row.tracker.ids) - row.checked_ids >= self.settings.stream_holdback_tokens

    def review_stream(self, row: Row, state: GateState, *, final: bool) -> tuple[StreamStep, str]:
        """The policy on a stream's text so far; returns what the row does next, and why (abstain).

        ``go`` releases the checked text. On ``restart`` the row is marked to leave the batch and start
        again, steered, from the text already sent (``prefix_ids``): nothing unchecked was sent, so
        nothing is taken back. On ``abstain`` the caller ends the row with ``stream_abstention``.
        """
        tracker = row.tracker
        assert tracker is not None
        verdict = self.verdict(row.req, tracker.text, state, row.vectors is not None, row.req.boost,
                               row.matched, final)
        row.checked_ids = len(tracker.ids)
        if verdict.action == "accept":
            row.ok_count, row.released = len(tracker.ids), len(tracker.text)
            return "go", ""
        if verdict.action == "abstain" or row.restarts >= 2:
            return "abstain", verdict.reason or "leak_after_escalation"
        self.count(row.req, verdict)
        row.req = replace(row.req, forced=verdict.matches, boost=verdict.boost)
        row.prefix_ids = [*row.prefix_ids, *tracker.ids[:row.ok_count]]
        row.prefix_text = tracker.text[:row.released]
        row.emitted, row.restarts, row.requeue = tracker.emitted, row.restarts + 1, True
        row.rechecked = row.rechecked or verdict.action == "steer"
        return "restart", ""

    def stream_abstention(self, row: Row, reason: str) -> Generation:
        """End a stream with the neutral answer (or, once text was sent, with what was sent); sends the
        neutral text when nothing was sent yet and returns the final ``Generation``."""
        tracker = row.tracker
        assert tracker is not None
        row.done = True
        ABSTENTIONS.labels(reason=reason).inc()
        sent = tracker.text[:tracker.emitted]
        text = sent if sent.strip() else self.settings.abstain_text
        if not sent.strip():
            row.post("delta", text)
        ids = tuple(self.tok.encode(text))
        logger.info("request %s route=%s: stream abstained (%s)", row.req.request_id, row.req.route, reason)
        return Generation(text, "stop", len(row.input_ids), len(ids), ids, True, row.matched,
                          rechecked=row.rechecked, abstained=True, abstain_reason=reason, boost=row.req.boost)
