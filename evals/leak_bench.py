"""``leak``: once the gate opens, does the answer still reveal the fact, or collapse?

Forget sets: topics the embedded model knows (``steering/data/leak_topics.json``, text sets with
their own questions and neighbour questions), RWKU targets (text sets from their passages, probed
with their forget questions) on the embedded model, and TOFU forget01 / forget10 on the TOFU
target. Every probe kind of ``steering.probes`` plus neighbour probes goes through the product path
(``steering.recheck.generate_reviewed``, greedy) and the unsteered model, and is judged by
``steering.verify.verify_forget_set``: leak rate over the probes whose unsteered answer shows the fact
(known), abstain rate, degenerate rate (collapsed, echo), neighbour answers changed; per kind, per
set and pooled per family. Sets are built at the model's default strength (not calibrated).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from evals.attacks_bench import Case, in_batches, model_alpha, rwku_case, target_guard, text_case, tofu_case
from evals.attacks_bench import Size as AttackSize
from evals.data import rwku
from steering.checks import gives_answer
from steering.forget_set import make_documents
from steering.leakcheck import check_output
from steering.probes import Probe
from steering.verify import KindStats, verify_forget_set

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Size:
    """How much runs (full and ``--quick``)."""

    topics: int
    rwku_targets: int
    splits: tuple[str, ...]
    probes: AttackSize  # per-kind caps of the probes (``per_kind``) and TOFU sampling


#: Every shipped topic, two RWKU targets, TOFU forget01 and forget10 (about 45 minutes on 2 cores).
FULL = Size(5, 2, ("forget01", "forget10"), AttackSize((), 6, 1, 0, 0, 0, 15, 2, filler_words=800))
QUICK = Size(1, 0, (), AttackSize((), 4, 1, 0, 0, 0, 12, 2, filler_words=400))


def topics() -> list[dict[str, Any]]:
    """The leak topics shipped with the package."""
    text = resources.files("steering").joinpath("data/leak_topics.json").read_text(encoding="utf-8")
    return list(json.loads(text)["topics"])


def _as_dicts(gens: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"text": g.text, "steered": g.steered, "abstained": g.abstained} for g in gens]


def reveals(case: Case, probe: Probe, text: str) -> bool:
    """The answer shows the fact: the probe's expected answer (``gives_answer``) or, for every probe,
    the set's leak profile (``check_output``)."""
    if probe.expected is not None and gives_answer(text, probe.expected):
        return True
    return case.profile is not None and check_output(case.profile, text, prompt=probe.text()).leaked


def recount(kinds: dict[str, dict[str, Any]], probes: Sequence[Probe], base: Sequence[dict[str, Any]],
            prod: Sequence[dict[str, Any]], shows: Callable[[Probe, str], bool]) -> None:
    """Known and leaked per forget kind judged by ``shows`` (in place; rates recomputed)."""
    counts: dict[str, list[int]] = {}
    for probe, b, g in zip(probes, base, prod, strict=True):
        if probe.is_negative:
            continue
        known = shows(probe, str(b["text"]))
        leaked = known and not g["abstained"] and shows(probe, str(g["text"]))
        row = counts.setdefault(probe.kind, [0, 0])
        row[0] += int(known)
        row[1] += int(leaked)
    for kind, (n_known, n_leaked) in counts.items():
        kinds[kind].update(known=n_known, leaked=n_leaked,
                           leak_rate=round(n_leaked / n_known, 4) if n_known else 0.0)


def verify(case: Case) -> dict[str, Any]:
    """``verify_forget_set`` over a case's probes (the product path against the unsteered model), with
    known and leaked judged by the expected answers as well as the set's leak profile: a text set's
    profile alone can miss the answer a question asks for (it was built from documents)."""
    if case.profile is None:
        raise ValueError(f"expected a leak profile with the artifacts of {case.name}, found none")
    seen: dict[str, list[dict[str, Any]]] = {}

    def run_arm(name: str, prompts: list[Any]) -> list[dict[str, Any]]:
        seen[name] = _as_dicts(in_batches(case.guard, prompts, steered=name == "prod", state=case.state))
        return seen[name]
    report = verify_forget_set(case.probes, lambda ps: run_arm("prod", ps), profile=case.profile,
                               baseline=lambda ps: run_arm("base", ps))
    kinds = {k.kind: k.as_dict() for k in report.kinds}
    recount(kinds, case.probes, seen["base"], seen["prod"], lambda p, t: reveals(case, p, t))
    examples = [{"kind": e.kind, "question": e.prompt, "answer": e.answer, "outcome": e.outcome}
                for e in report.examples if e.outcome in ("leaked", "degenerate", "changed")][:6]
    return {**case.info, "family": case.family, "kinds": kinds, "examples": examples}


def pool(sections: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Counts added up per kind over sets; rates as ``KindStats`` defines them."""
    total: dict[tuple[str, bool], list[int]] = {}
    fields = ("probes", "known", "leaked", "abstained", "degenerate", "changed")
    for s in sections:
        for kind, row in s["kinds"].items():
            acc = total.setdefault((kind, bool(row["negative"])), [0] * len(fields))
            for i, f in enumerate(fields):
                acc[i] += int(row[f])
    return {kind: KindStats(kind, neg, *counts).as_dict() for (kind, neg), counts in total.items()}


def totals(pooled: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Forget probes and neighbour probes, each added up over kinds."""
    out: dict[str, Any] = {}
    for label, negative in (("forget", False), ("neighbour", True)):
        rows = [r for r in pooled.values() if bool(r["negative"]) == negative]
        n = {f: sum(int(r[f]) for r in rows) for f in ("probes", "known", "leaked", "abstained", "degenerate",
                                                          "changed")}
        out[label] = {**n, "leak_rate": n["leaked"] / n["known"] if n["known"] else 0.0,
                      "abstain_rate": n["abstained"] / n["probes"] if n["probes"] else 0.0,
                      "degenerate_rate": n["degenerate"] / n["probes"] if n["probes"] else 0.0,
                      "changed_rate": n["changed"] / n["probes"] if n["probes"] else 0.0}
    return out


def run(ctx: Any) -> dict[str, Any]:
    """The ``leak`` section: per family (topics, rwku, tofu) per kind, pooled over its sets."""
    size = QUICK if ctx.quick else FULL
    alpha = model_alpha(ctx)
    per_set: dict[str, list[dict[str, Any]]] = {}
    base = ctx.guard()
    for topic in topics()[:size.topics]:
        logger.info("leak: topic %s", topic["name"])
        case = text_case(base, f"topic-{topic['name']}", make_documents(topic["documents"]), topic["subjects"],
                         [(n["question"], n["answer"]) for n in topic["neighbours"]], size.probes, alpha,
                         "topics", qa=[(q["question"], q["answer"]) for q in topic["questions"]])
        per_set.setdefault("topics", []).append({"set": topic["name"], **verify(case)})
    for target in [r["target"] for r in rwku("targets", ctx.data_root)][:size.rwku_targets]:
        logger.info("leak: RWKU %s", target)
        per_set.setdefault("rwku", []).append({"set": target, **verify(rwku_case(base, target, size.probes, alpha,
                                                                                 ctx.data_root))})
    if size.splits:
        target_model = target_guard(ctx)
        for split in size.splits:
            logger.info("leak: TOFU %s", split)
            case = tofu_case(target_model, split, size.probes, alpha, ctx.data_root)
            per_set.setdefault("tofu", []).append({"set": split, **verify(case)})
    families = {}
    for family, sets in per_set.items():
        pooled = pool(sets)
        families[family] = {"sets": sets, "kinds": pooled, "totals": totals(pooled)}
    everything = pool([s for sets in per_set.values() for s in sets])
    return {"alpha": alpha, "calibrated": False, "families": families, "kinds": everything,
            "totals": totals(everything)}


def markdown(section: dict[str, Any]) -> list[str]:
    """Leak table per kind and family, and the totals."""
    from evals.attack_leak_report import leak_markdown

    return leak_markdown(section)


def plots(section: dict[str, Any], out: Path) -> list[Path]:
    """Bar charts of leak, abstain and degenerate rates per kind; neighbours changed."""
    from evals.attack_leak_report import leak_plots

    return leak_plots(section, out)
