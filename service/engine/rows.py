"""How a request's row leaves the serving engine (GUARD-IT, arXiv 2605.12765), and the throttled
registry sync, shared by the native batch worker (``batch``) and the vLLM engine (``service.engine_vllm``)
so both end rows with the same events, finish reasons, metrics and logs.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from service.generation import GateInfo, RequestTimeoutError, Row
from service.metrics import GENERATED_TOKENS
from steering import Generation
from steering.decoding import TextTracker
from steering.guard import RowPlan

if TYPE_CHECKING:
    from service.engine.admission import Admission, EngineTokenizer
    from service.runtime import Runtime
    from service.settings import Settings

logger = logging.getLogger(__name__)


def begin_row(row: Row, plan: RowPlan, tok: EngineTokenizer) -> None:
    """Start (or restart, after a re-check) a row on its gate decision: its vectors, a fresh text
    tracker from the released prefix, and, once per stream, the gate event."""
    p = row.req.params
    row.matched, row.vectors = plan.matched, plan.vectors
    row.tracker = TextTracker(tok.tokenizer, p.stop, tok.eos, p.max_new_tokens,
                              prefix=row.prefix_text, prefix_tokens=len(row.prefix_ids), emitted=row.emitted)
    row.checked_ids, row.ok_count, row.released = 0, 0, len(row.prefix_text)
    if row.stream and not row.gate_posted:
        row.gate_posted = True
        row.post("gate", GateInfo(row.vectors is not None, row.matched))


class RowEnds:
    """Ends rows: the final ``Generation`` or an error to the caller, counted and logged.

    Args:
        settings: ``request_timeout_s`` (named in the timeout error).
        admission: records each request's latency (``Retry-After``).
    """

    def __init__(self, settings: Settings, admission: Admission) -> None:
        self.settings = settings
        self.admission = admission

    def close(self, row: Row, finish: str, now: float) -> None:
        """End the row with its text so far and ``finish``; ``cancelled`` past the deadline (not by
        its caller) fails it with ``RequestTimeoutError`` instead."""
        row.done = True
        if finish == "cancelled" and not row.cancelled:  # past its deadline
            self.fail(row, RequestTimeoutError(
                f"expected a result within {self.settings.request_timeout_s:g} s, found it still running"))
            return
        tracker = row.tracker
        ids = (*row.prefix_ids, *(tracker.ids if tracker is not None else ()))
        if row.stream and tracker is not None and (delta := tracker.delta(final=True)):
            row.post("delta", delta)
        steered = row.req.steer and bool(row.matched)
        gen = Generation(tracker.text if tracker else "", finish, len(row.input_ids), len(ids), ids, steered,
                         row.matched, rechecked=steered and row.rechecked, boost=row.req.boost if steered else 0.0)
        self.finish(row, gen, now)

    def finish(self, row: Row, gen: Generation, now: float) -> None:
        """Hand the row's final ``Generation`` to its caller; count and log it."""
        GENERATED_TOKENS.inc(gen.completion_tokens)
        latency = now - row.submitted
        self.admission.record_latency(latency)
        logger.info("request %s route=%s finish=%s steered=%s prompt_tokens=%d tokens=%d latency=%.3fs",
                    row.req.request_id, row.req.route, gen.finish_reason, gen.steered, gen.prompt_tokens,
                    gen.completion_tokens, latency)
        row.post("done", gen)

    def fail(self, row: Row, exc: Exception) -> None:
        """End the row with ``exc`` (raised in its caller)."""
        row.done = True
        logger.info("request %s route=%s failed: %s", row.req.request_id, row.req.route, type(exc).__name__)
        row.post("error", exc)


class RegistrySync:
    """Follows the registry at most every ``sync_interval_s`` seconds; an outage keeps the last gate snapshot.

    Args:
        runtime: whose ``sync`` reads the registry and swaps the gate snapshot on a change.
        settings: ``sync_interval_s``.
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._last = 0.0

    def maybe_sync(self) -> None:
        """Read the registry if ``sync_interval_s`` has passed since the last read."""
        now = time.monotonic()
        if now - self._last < self.settings.sync_interval_s:
            return
        self._last = now
        try:
            self.runtime.sync()
        except Exception:  # noqa: BLE001 - a registry outage must not stop generation
            logger.warning("registry sync failed; serving with the last gate snapshot", exc_info=True)
