"""Calibrated strength (METHOD.md "choices we add"): the smallest alpha that makes the model stop
giving a QA forget set's answers while its outputs stay fluent (GUARD-IT, arXiv 2605.12765).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steering.checks import gives_answer, is_collapsed
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
        forgotten: fraction of those forgotten fluently at ``alpha``: the answer is gone and the
            output has not collapsed (a collapsed output is a failure, not forgetting).
        collapsed: fraction of collapsed outputs at ``alpha`` (known questions and the first
            ``sample`` questions of the set).
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
                    max_collapsed: float = 0.1, sample: int = 16, max_new_tokens: int = 20,
                    batch_size: int | None = None) -> Calibration:
    """Choose alpha for a QA forget set on the questions the base model answers correctly.

    The set is evaluated in a private gate snapshot; the live snapshot is not touched. The choice
    itself is ``choose_alpha``.

    Args:
        guard: the guarded model.
        docs: the set's documents (only QA pairs can be measured).
        artifacts: the built artifacts.
        threshold: the set's gate threshold.
        fallback: alpha returned when nothing can be measured (text documents, nothing known).
        ladder: strengths tried in increasing order.
        target: fraction of known answers that must be forgotten fluently.
        max_collapsed: largest tolerated fraction of collapsed outputs (0.1: one in a sample of 16).
        sample: at most this many known questions are used.
        max_new_tokens: answer length.
        batch_size: rows per generate call (default: all at once); 1 for a model whose rows interact,
            such as one with dynamically quantized activations.
    """
    if not docs.qa:
        return Calibration(fallback, 0, 0.0, 0.0, (), False)
    params = SamplingParams(max_new_tokens=max_new_tokens)
    pairs = list(docs.qa)[: sample + sample // 2]
    prompts = [[{"role": "user", "content": p.question}] for p in pairs]
    size = batch_size or len(prompts)

    def generate(chats: list[list[dict[str, str]]], state: GateState | None) -> list[str]:
        steer = state is not None
        return [o.text for start in range(0, len(chats), size)
                for o in guard.generate(chats[start:start + size], params, steer=steer, state=state)]

    base = generate(prompts, None)
    known = [i for i, (pair, out) in enumerate(zip(pairs, base, strict=True))
             if gives_answer(out, pair.answer)][:sample]

    def steered(alpha: float, chats: list[list[dict[str, str]]]) -> list[str]:
        return generate(chats, GateState((ActiveSet("calibration", artifacts, threshold, alpha),)))

    if not known:
        # Nothing to forget can be measured, but fluency can: the default strength is kept only if
        # the set's own questions do not collapse under it, else the strongest weaker one that does not.
        chats = prompts[:sample]
        order = [fallback, *sorted((a for a in ladder if a < fallback), reverse=True)]
        alpha, tried = choose_fluent(order, lambda a: sum(map(is_collapsed, steered(a, chats))) / len(chats),
                                     max_collapsed=max_collapsed)
        logger.info("alpha %.2f: no known answer to calibrate on; %d strengths checked for collapse", alpha,
                    len(tried))
        return Calibration(alpha, 0, 0.0, next(c for a, _, c in tried if a == alpha), tuple(tried), False)

    # Forgetting is scored on the known answers; collapse on them and on the first ``sample``
    # questions too, so a set whose base model knows only a few answers cannot hide collapse.
    probe = sorted(set(known) | set(range(min(sample, len(pairs)))))
    answers = [pairs[i].answer if i in known else None for i in probe]

    def measure(alpha: float) -> tuple[float, float]:
        return fluent_forgetting(steered(alpha, [prompts[i] for i in probe]), answers)

    alpha, tried = choose_alpha(ladder, measure, target=target, max_collapsed=max_collapsed)
    step = next(t for t in tried if t[0] == alpha)
    logger.info("calibrated alpha %.2f: %.2f of %d known answers forgotten fluently, %.2f of %d outputs "
                "collapsed", alpha, step[1], len(known), step[2], len(probe))
    return Calibration(alpha, len(known), step[1], step[2], tuple(tried), True)


def fluent_forgetting(outputs: Sequence[str], answers: Sequence[str | None]) -> tuple[float, float]:
    """(fraction of the outputs with an answer that lack it and have not collapsed, fraction of all
    outputs collapsed); an output whose answer is None (not known to the base model) counts for
    collapse only.
    """
    if len(outputs) != len(answers) or not any(a is not None for a in answers):
        raise ValueError(f"expected one answer per output (at least one known), found {len(outputs)} outputs "
                         f"and {len(answers)} answers")
    collapsed = [is_collapsed(o) for o in outputs]
    scored = [(o, a, c) for o, a, c in zip(outputs, answers, collapsed, strict=True) if a is not None]
    forgotten = [not c and not gives_answer(o, a) for o, a, c in scored]
    return sum(forgotten) / len(scored), sum(collapsed) / len(outputs)


def choose_alpha(ladder: Sequence[float], measure: Callable[[float], tuple[float, float]], *, target: float,
                 max_collapsed: float) -> tuple[float, list[tuple[float, float, float]]]:
    """Walk up the ladder: the first strength that forgets ``target`` fluently without too much collapse.

    Past a fluent strength, a strength that collapses too much ends the walk (stronger ones collapse
    more). A collapse before any fluent strength does not: on a set where even the weakest strength
    breaks an answer, a stronger push can move it somewhere fluent. If no strength reaches the
    target, the fluent one that forgets most wins (the weaker on ties); if none is fluent, the one
    that collapses least.

    Args:
        ladder: strengths in increasing order.
        measure: ``alpha -> (fluent forgetting, collapsed fraction)`` (``fluent_forgetting``).
        target: fluent forgetting to reach.
        max_collapsed: largest tolerated collapsed fraction.

    Returns:
        (chosen alpha, (alpha, fluent forgetting, collapsed) per strength tried).
    """
    if not ladder:
        raise ValueError("expected at least one strength in the ladder, found none")
    tried: list[tuple[float, float, float]] = []
    for alpha in ladder:
        forgotten, collapsed = measure(alpha)
        tried.append((alpha, forgotten, collapsed))
        if collapsed > max_collapsed:
            if any(t[2] <= max_collapsed for t in tried[:-1]):
                break
            continue
        if forgotten >= target:
            return alpha, tried
    fluent = [t for t in tried if t[2] <= max_collapsed]
    if fluent:
        return max(fluent, key=lambda t: (t[1], -t[0]))[0], tried
    return min(tried, key=lambda t: (t[2], t[0]))[0], tried


def choose_fluent(strengths: Sequence[float], measure: Callable[[float], float], *,
                  max_collapsed: float) -> tuple[float, list[tuple[float, float, float]]]:
    """The first of ``strengths`` whose collapsed fraction ``measure(alpha)`` is tolerated, else the least
    collapsing one (the earlier on ties).

    Returns:
        (chosen alpha, (alpha, 0.0, collapsed) per strength tried).
    """
    if not strengths:
        raise ValueError("expected at least one strength, found none")
    tried: list[tuple[float, float, float]] = []
    for alpha in strengths:
        tried.append((alpha, 0.0, measure(alpha)))
        if tried[-1][2] <= max_collapsed:
            return alpha, tried
    return min(tried, key=lambda t: t[2])[0], tried
