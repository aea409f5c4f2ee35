"""Calibrated strength (METHOD.md "choices we add"): the smallest alpha that makes the model stop
giving a QA forget set's answers while its outputs stay fluent (GUARD-IT, arXiv 2605.12765).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from steering.eval.metrics import contains_answer, is_collapsed
from steering.forget_set import ForgetDocuments
from steering.gates import ActiveSet, GateState
from steering.guard import Guard, SamplingParams
from steering.vectors import ForgetSetArtifacts

logger = logging.getLogger(__name__)

#: Strengths tried, in order; the first that meets the target wins.
LADDER: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass(frozen=True)
class Calibration:
    """Outcome of the search.

    Attributes:
        alpha: chosen strength (``fallback`` when nothing could be measured).
        known: forget questions whose answer the base model gives (the ones that can be forgotten).
        forgotten: fraction of those no longer answered at ``alpha``.
        collapsed: fraction of collapsed outputs at ``alpha``.
        tried: (alpha, forgotten, collapsed) per step.
        measured: False when no forget answer was known to the base model.
    """

    alpha: float
    known: int
    forgotten: float
    collapsed: float
    tried: tuple[tuple[float, float, float], ...]
    measured: bool


def calibrate_alpha(guard: Guard, docs: ForgetDocuments, artifacts: ForgetSetArtifacts, *, threshold: float,
                    fallback: float, ladder: Sequence[float] = LADDER, target: float = 0.9,
                    max_collapsed: float = 0.2, sample: int = 16, max_new_tokens: int = 20) -> Calibration:
    """Choose alpha for a QA forget set on the questions the base model answers correctly.

    The set is evaluated in a private gate snapshot; the live snapshot is not touched.

    Args:
        guard: the guarded model.
        docs: the set's documents (only QA pairs can be measured).
        artifacts: the built artifacts.
        threshold: the set's gate threshold.
        fallback: alpha returned when nothing can be measured (text documents, nothing known).
        ladder: strengths tried in increasing order.
        target: fraction of known answers that must disappear.
        max_collapsed: largest tolerated fraction of collapsed outputs.
        sample: at most this many known questions are used.
        max_new_tokens: answer length.
    """
    if not docs.qa:
        return Calibration(fallback, 0, 0.0, 0.0, (), False)
    params = SamplingParams(max_new_tokens=max_new_tokens)
    pairs = list(docs.qa)[: sample + sample // 2]
    prompts = [[{"role": "user", "content": p.question}] for p in pairs]
    base = guard.generate(prompts, params, steer=False)
    known = [(prompt, pair) for prompt, pair, out in zip(prompts, pairs, base, strict=True)
             if contains_answer(out.text, pair.answer)][:sample]
    if not known:
        return Calibration(fallback, 0, 0.0, 0.0, (), False)
    tried: list[tuple[float, float, float]] = []
    for alpha in ladder:
        state = GateState((ActiveSet("calibration", artifacts, threshold, alpha),))
        outs = guard.generate([p for p, _ in known], params, steer=True, state=state)
        forgotten = sum(not contains_answer(o.text, pair.answer) for o, (_, pair) in zip(outs, known, strict=True))
        collapsed = sum(is_collapsed(o.text) for o in outs)
        tried.append((alpha, forgotten / len(known), collapsed / len(known)))
        if collapsed / len(known) > max_collapsed:
            break  # stronger only collapses more: keep the last fluent strength
        if forgotten / len(known) >= target:
            logger.info("calibrated alpha %.2f: %d/%d known answers forgotten", alpha, forgotten, len(known))
            return Calibration(alpha, len(known), tried[-1][1], tried[-1][2], tuple(tried), True)
    fluent = [t for t in tried if t[2] <= max_collapsed]
    best = max(fluent, key=lambda t: (t[1], -t[0])) if fluent else (ladder[0], 0.0, 0.0)
    return Calibration(best[0], len(known), best[1], best[2], tuple(tried), True)
