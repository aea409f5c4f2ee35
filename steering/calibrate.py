"""Calibrated strength (METHOD.md "choices we add"): the alpha at which the model stops giving a
forget set's answers while its outputs stay proper replies (GUARD-IT, arXiv 2605.12765).

Judged on probes the base model answers correctly: a QA set's questions, half of them asked in
other words, or cloze probes mined from a text set's documents
(``steering.probes.calibration_probes``). All probes of a strength go through one batched
generate call with few new tokens, and the ladder starts at the model's default strength (never
below it once something is known) and stops at the first strength that holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steering.checks import EmbedFn, degenerate_flags, gives_answer, is_collapsed
from steering.forget_set import ForgetDocuments
from steering.gates import ActiveSet, GateState
from steering.guard import Guard, SamplingParams
from steering.probes import Probe, calibration_probes
from steering.vectors import ForgetSetArtifacts, ProgressFn, embed

logger = logging.getLogger(__name__)

#: Strengths tried, in order; the first that meets the target wins.
LADDER: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


@dataclass(frozen=True)
class Calibration:
    """Outcome of the search.

    Attributes:
        alpha: chosen strength (``fallback`` when nothing could be measured).
        known: probes whose answer the base model gives (the ones that can be forgotten).
        forgotten: fraction of those forgotten fluently at ``alpha``: the answer is gone and the
            output is a proper reply (a degenerate output is a failure, not forgetting).
        collapsed: fraction of degenerate outputs at ``alpha`` (collapsed, echoing the probe or off
            its topic), over the known probes and the others run with them.
        tried: (alpha, forgotten, degenerate) per step.
        measured: False when no answer was known to the base model.
        probes: probes the base model was asked (after dropping those the gate does not open on).
        paraphrased: how many of them are held-out wordings (paraphrases or cloze probes).
        gate_missed: probes dropped because the set's gate stays closed on them (steering cannot
            act there; the gate's own evaluation counts them).
        kind: ``qa`` or ``text``.
    """

    alpha: float
    known: int
    forgotten: float
    collapsed: float
    tried: tuple[tuple[float, float, float], ...]
    measured: bool
    probes: int = 0
    paraphrased: int = 0
    gate_missed: int = 0
    kind: str = "qa"

    def facts(self) -> dict[str, Any]:
        """JSON-ready summary for the build's record and report."""
        return {"alpha": self.alpha, "measured": self.measured, "kind": self.kind, "probes": self.probes,
                "held_out_probes": self.paraphrased, "gate_missed": self.gate_missed, "known": self.known,
                "forgotten": round(self.forgotten, 4), "degenerate": round(self.collapsed, 4),
                "ladder": [{"alpha": a, "forgotten": round(f, 4), "degenerate": round(d, 4)}
                           for a, f, d in self.tried]}


def calibrate_alpha(guard: Guard, docs: ForgetDocuments, artifacts: ForgetSetArtifacts, *, threshold: float,
                    fallback: float, ladder: Sequence[float] = LADDER, target: float = 0.9,
                    max_collapsed: float = 0.1, sample: int = 16, candidates: int = 32, rows: int = 24,
                    max_new_tokens: int = 16,
                    batch_size: int | None = None, use_embedder: bool = True,
                    progress: ProgressFn | None = None) -> Calibration:
    """Choose alpha for a forget set on the probes the base model answers correctly.

    The set is evaluated in a private gate snapshot; the live snapshot is not touched. The choice
    itself is ``choose_alpha`` (``choose_fluent`` when nothing is known).

    Args:
        guard: the guarded model.
        docs: the set's documents (QA pairs, or texts probed by cloze).
        artifacts: the built artifacts.
        threshold: the set's gate threshold.
        fallback: the model's default strength: the ladder's floor once an answer is known, the
            result when nothing can be measured and it stays fluent.
        ladder: strengths tried in increasing order (those below ``fallback`` only without known answers).
        target: fraction of known answers that must be forgotten fluently.
        max_collapsed: largest tolerated fraction of degenerate outputs (0.1: two in 24).
        sample: at most this many known probes are used per strength.
        candidates: at most this many probes are put to the base model to find the known ones.
        rows: probes generated per strength: the known ones, filled up with unknown ones (judged for
            degeneracy only).
        max_new_tokens: answer length (a long reference answer is checked on as many words as the
            output has, ``steering.checks.gives_answer``).
        batch_size: rows per generate call (default: all at once); 1 for a model whose rows interact,
            such as one with dynamically quantized activations.
        use_embedder: judge off-topic answers by the gate embedder's cosine (else lexically).
        progress: called as ``progress("calibrate", done, total)`` after each generate pass.
    """
    kind = "qa" if docs.qa else "text"
    params = SamplingParams(max_new_tokens=max_new_tokens)
    size = batch_size or max(1, candidates)

    def state_at(alpha: float) -> GateState:
        return GateState((ActiveSet("calibration", artifacts, threshold, alpha),))

    probes = calibration_probes(docs, candidates)
    opened = guard.gate([p.prompt for p in probes], state_at(fallback)) if probes else []
    missed = sum(not m for m in opened)
    probes = [p for p, m in zip(probes, opened, strict=True) if m]
    held_out = sum(p.kind != "own" for p in probes)
    steps = [0, 2 + len(ladder)]

    def tick() -> None:
        steps[0] += 1
        if progress is not None:
            progress("calibrate", min(steps[0], steps[1]), steps[1])

    def generate(asked: Sequence[Probe], alpha: float | None) -> list[str]:
        prompts = [p.prompt for p in asked]
        state = None if alpha is None else state_at(alpha)
        out = [o.text for start in range(0, len(prompts), size)
               for o in guard.generate(prompts[start:start + size], params, steer=state is not None,
                                       state=state)]
        tick()
        return out

    def embed_texts(texts: Sequence[str]) -> Any:
        return embed(guard.embedder, texts)

    embed_fn: EmbedFn | None = embed_texts if use_embedder else None

    def done(alpha: float, known: int, forgotten: float, degenerate: float,
             tried: Sequence[tuple[float, float, float]], measured: bool) -> Calibration:
        if progress is not None:
            progress("calibrate", steps[1], steps[1])
        return Calibration(alpha, known, forgotten, degenerate, tuple(tried), measured, len(probes), held_out,
                           missed, kind)

    if not probes:
        return done(fallback, 0, 0.0, 0.0, (), False)
    base = generate(probes, None)
    known = [i for i, (p, out) in enumerate(zip(probes, base, strict=True))
             if p.expected is not None and gives_answer(out, p.expected)][:sample]
    # A probe the base model already answers with an echo or off topic (often a reply cut at
    # ``max_new_tokens`` while restating the question) cannot show steering made it so.
    base_flags = degenerate_flags([p.text() for p in probes], base, embed=embed_fn)

    if not known:
        # Nothing to forget can be measured, but fluency can: the default strength is kept only if
        # the probes do not degenerate under it, else the strongest weaker one that does not.
        batch = probes[:rows]
        order = [fallback, *sorted((a for a in ladder if a < fallback), reverse=True)]
        steps[1] = 1 + len(order)

        def degenerate(alpha: float) -> float:
            outputs = generate(batch, alpha)
            flags = degenerate_flags([p.text() for p in batch], outputs, embed=embed_fn)
            bad = [is_collapsed(o) or (f and not b)
                   for o, f, b in zip(outputs, flags, base_flags[: len(batch)], strict=True)]
            return sum(bad) / len(batch)

        alpha, tried = choose_fluent(order, degenerate, max_collapsed=max_collapsed)
        logger.info("alpha %.2f: no known answer among %d probes; %d strengths checked for degeneracy", alpha,
                    len(probes), len(tried))
        return done(alpha, 0, 0.0, next(c for a, _, c in tried if a == alpha), tried, False)

    # Forgetting is scored on the known probes; degeneracy on them and on unknown ones up to
    # ``rows`` too, so a set whose base model knows only a few answers cannot hide collapse.
    unknown = [i for i in range(len(probes)) if i not in set(known)]
    chosen = sorted(known + unknown[: max(0, rows - len(known))])
    batch = [probes[i] for i in chosen]
    answers = [probes[i].expected if i in known else None for i in chosen]
    rungs = floor_ladder(ladder, fallback)
    steps[1] = 1 + len(rungs)

    def measure(alpha: float) -> tuple[float, float]:
        return fluent_forgetting(generate(batch, alpha), answers, questions=[p.text() for p in batch],
                                 embed=embed_fn, baseline=[base_flags[i] for i in chosen])

    alpha, tried = choose_alpha(rungs, measure, target=target, max_collapsed=max_collapsed)
    step = next(t for t in tried if t[0] == alpha)
    logger.info("calibrated alpha %.2f: %.2f of %d known answers forgotten fluently, %.2f of %d outputs "
                "degenerate (%d probes, %d held out, %d gate misses)", alpha, step[1], len(known), step[2],
                len(batch), len(probes), held_out, missed)
    return done(alpha, len(known), step[1], step[2], tried, True)


def floor_ladder(ladder: Sequence[float], floor: float) -> list[float]:
    """The strengths of ``ladder`` at or above ``floor``, starting at ``floor`` itself."""
    return [floor, *(a for a in ladder if a > floor + 1e-9)]


def fluent_forgetting(outputs: Sequence[str], answers: Sequence[str | None], *,
                      questions: Sequence[str] | None = None, embed: EmbedFn | None = None,
                      baseline: Sequence[bool] | None = None) -> tuple[float, float]:
    """(fraction of the outputs with an answer that lack it and are proper replies, fraction of all
    outputs degenerate); an output whose answer is None (not known to the base model) counts for
    degeneracy only.

    Without ``questions`` an output is degenerate when it has collapsed; with them also when it
    echoes its question or is off its topic (``steering.checks.degenerate_flags``, by ``embed``'s
    cosine when given). ``baseline`` marks rows whose unsteered output is already flagged so (a
    short answer that restates its question reads as an echo): there only collapse counts.
    """
    if len(outputs) != len(answers) or not any(a is not None for a in answers):
        raise ValueError(f"expected one answer per output (at least one known), found {len(outputs)} outputs "
                         f"and {len(answers)} answers")
    bad = [is_collapsed(o) for o in outputs]
    if questions is not None:
        flags = degenerate_flags(questions, outputs, embed=embed)
        exempt = baseline if baseline is not None else [False] * len(outputs)
        bad = [c or (f and not e) for c, f, e in zip(bad, flags, exempt, strict=True)]
    scored = [(o, a, c) for o, a, c in zip(outputs, answers, bad, strict=True) if a is not None]
    forgotten = [not c and not gives_answer(o, a) for o, a, c in scored]
    return sum(forgotten) / len(scored), sum(bad) / len(outputs)


def choose_alpha(ladder: Sequence[float], measure: Callable[[float], tuple[float, float]], *, target: float,
                 max_collapsed: float, patience: int = 2) -> tuple[float, list[tuple[float, float, float]]]:
    """Walk up the ladder: the first strength that forgets ``target`` fluently without too much collapse.

    Past a fluent strength, a strength that collapses too much ends the walk (stronger ones collapse
    more). A collapse before any fluent strength does not: on a set where even the weakest strength
    breaks an answer, a stronger push can move it somewhere fluent. If no strength reaches the
    target, the fluent one that forgets most wins (the stronger on ties: equal scores on a few probes
    do not show the weaker strength is enough); if none is fluent, the one that collapses least
    (the weaker on ties).

    Args:
        ladder: strengths in increasing order.
        measure: ``alpha -> (fluent forgetting, collapsed fraction)`` (``fluent_forgetting``).
        target: fluent forgetting to reach.
        max_collapsed: largest tolerated collapsed fraction.
        patience: the walk also ends after this many fluent strengths in a row that forget no more
            than the best before them (a plateau: pushing harder only risks collapse).

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
        fluent_so_far = [t[1] for t in tried if t[2] <= max_collapsed]
        if len(fluent_so_far) > patience and max(fluent_so_far[-patience:]) <= max(fluent_so_far[:-patience]):
            break
    fluent = [t for t in tried if t[2] <= max_collapsed]
    if fluent:
        return max(fluent, key=lambda t: (t[1], t[0]))[0], tried
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
