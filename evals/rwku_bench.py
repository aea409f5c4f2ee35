"""Benchmark ``rwku``: forgetting real people (RWKU, Jin et al. 2024, arXiv:2406.10890) with GUARD-IT.

Each target's forget set is built only from what a compliance request would carry: the target's
name and its Wikipedia passages (``forget_corpus_passage``, the first ``MAX_PASSAGES``), never the
probes. Gate part (embedder only): recall on the target's forget probes per level and per level-3
attack type, false opens on its neighbour probes and on other targets' forget probes, for several
gate variants side by side; each target is active alone (one erasure request at a time, as the
issue's baseline), and the default and subject gates are also measured with every target active at
once. Efficacy part (LLM): ``evals.rwku_efficacy``.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from evals.data import rwku
from evals.metrics import rate
from steering.config import AUTO, DEFAULT_THRESHOLD, HYBRID, PAPER, SUBJECT, BuildConfig, GateRule, GateSetting
from steering.entities import mine_entities, names_subject
from steering.forget_set import make_documents
from steering.gate_input import gate_input
from steering.gates import HIGH_MARGIN, SUBJECT_LOW_MARGIN, ActiveSet, GateMatch, GateState
from steering.vectors import GateParts, build_gate, embed, gate_names, gate_only_artifacts

logger = logging.getLogger(__name__)

MAX_PASSAGES = 200
QUICK_TARGETS = 10
OTHER_SAMPLE = 300
#: Probes drawn for the all-targets-active measurement in a full run (forget and neighbour each).
ALL_ACTIVE_SAMPLE = 2000
FORGET_FILES = ("forget_level1", "forget_level2", "forget_level3")
NEIGHBOR_FILES = ("neighbor_level1", "neighbor_level2")
#: Gate variants, in report order: the product default (``auto``: the subject rule with the subject
#: mined from the passages, hybrid where it is named in too few), the previous default, the paper,
#: the subject rule given the target's name, and that rule with a per-target threshold.
VARIANTS = (AUTO, HYBRID, PAPER, SUBJECT, f"{SUBJECT}/calibrated")


@dataclass(frozen=True)
class Probe:
    """One RWKU probe with its embedding row."""

    subject: str
    level: str
    kind: str  # "forget" or "neighbor"
    attack: str
    query: str
    answer: str
    row: int


@dataclass
class RwkuData:
    """Targets, their passages and every probe of the chosen targets, embedded once: each probe as
    the product's gate reads it (``steering.gate_input``: the query, its windows and re-spellings)."""

    targets: list[str]
    passages: dict[str, list[str]]
    probes: list[Probe]
    windows: np.ndarray  # [n_windows, d_embed]: every gate window of every probe
    groups: list[list[int]]  # per probe, its rows of ``windows``; the first is the query itself
    names: list[tuple[str, ...]]  # per probe, the full texts names are looked for in

    @cached_property
    def embeddings(self) -> np.ndarray:
        """``[n_probes, d_embed]``: the raw query of each probe (row ``Probe.row``), as the paper embeds it."""
        return self.windows[[g[0] for g in self.groups]]

    def of(self, subject: str, kind: str) -> list[Probe]:
        """The probes of one target and kind."""
        return [p for p in self.probes if p.subject == subject and p.kind == kind]


def load(embedder: Any, *, quick: bool, root: Any = None) -> RwkuData:
    """Read the targets (first ``QUICK_TARGETS`` when quick), their passages and probes; embed probes."""
    targets = [r["target"] for r in rwku("targets", root)]
    if quick:
        targets = targets[:QUICK_TARGETS]
    chosen = set(targets)
    passages: dict[str, list[str]] = defaultdict(list)
    for r in rwku("forget_corpus_passage", root):
        if r["subject"] in chosen and len(passages[r["subject"]]) < MAX_PASSAGES:
            passages[r["subject"]].append(r["text"])
    probes: list[Probe] = []
    for name in FORGET_FILES + NEIGHBOR_FILES:
        kind = "forget" if name.startswith("forget") else "neighbor"
        for r in rwku(name, root):
            if r["subject"] in chosen:
                probes.append(Probe(r["subject"], str(r["level"]), kind, _attack(r), r["query"], str(r["answer"]),
                                    len(probes)))
    seen = [gate_input(p.query) for p in probes]  # a turn's first window is the turn itself
    texts: list[str] = []
    groups: list[list[int]] = []
    for g in seen:
        groups.append(list(range(len(texts), len(texts) + len(g.windows))))
        texts.extend(g.windows)
    return RwkuData(targets, dict(passages), probes, embed(embedder, texts), groups, [g.full_texts for g in seen])


def _attack(row: dict[str, Any]) -> str:
    """Level-3 attack type with RWKU's few odd spellings merged ("cross-lingual (French)")."""
    kind = str(row.get("type", ""))
    if str(row["level"]) != "3":
        return kind
    kind = kind.replace("cross-lingual", "cross lingual")
    return "cross lingual" if kind.startswith("cross lingual") else kind


def names_target(query: str, target: str) -> bool:
    """True when a probe names the target by its capitalised surname (a plain check used only to
    split the neighbour probes in the report, independent of the gate's own name matching)."""
    surname = re.split(r"[ ,]", target.split(",")[0].strip())[-1]
    return re.search(rf"(?<!\w){re.escape(surname)}(?!\w)", query) is not None


def variant_parts(embedder: Any, target: str, passages: Sequence[str]) -> dict[str, tuple[GateParts, GateRule, float]]:
    """Gate parts, resolved rule and threshold T of every variant for one target (clustering shared)."""
    docs = make_documents(list(passages))
    texts = docs.gate_texts()
    hybrid = build_gate(embedder, docs, BuildConfig(gate=HYBRID))
    labels = hybrid.clustering.labels

    def parts(gate: GateSetting, subject: str | None = None) -> GateParts:
        mode, entities, found = gate_names(texts, labels, gate, subject=subject)
        return replace(hybrid, entities=entities, subjects=found, mode=mode)

    auto, named = parts(AUTO), parts(SUBJECT, target)
    assert auto.mode is not None and named.subjects
    return {AUTO: (auto, auto.mode, DEFAULT_THRESHOLD), HYBRID: (hybrid, HYBRID, DEFAULT_THRESHOLD),
            PAPER: (hybrid, PAPER, DEFAULT_THRESHOLD), SUBJECT: (named, SUBJECT, DEFAULT_THRESHOLD),
            f"{SUBJECT}/calibrated": (named, SUBJECT, calibrate_threshold(embedder, named, texts))}


def neighbour_negatives(parts: GateParts, texts: Sequence[str], *, limit: int = 40) -> list[str]:
    """Neighbour-like questions built from the passages alone: about the other names they mention
    (works, relatives, places), which a deployment should keep answering."""
    own = {n for s in parts.subjects for n in (*s.names, *s.surnames)}
    others = [e for e in mine_entities(texts, min_count=2)
              if len(e) < 40 and not any(o in e.split() or o in e for o in own)][:limit]
    return [q.format(e.title()) for e in others for q in ("Tell me about {}.", "What is {} known for?")]


def calibrate_threshold(embedder: Any, parts: GateParts, texts: Sequence[str]) -> float:
    """Per-target T from neighbour-like negatives (``neighbour_negatives``, see ``threshold_above``)."""
    negatives = neighbour_negatives(parts, texts)
    if not negatives:
        return DEFAULT_THRESHOLD
    return threshold_above(float((embed(embedder, negatives) @ parts.doc_embeddings.T).max()))


def threshold_above(top: float, *, margin: float = 0.03) -> float:
    """The T whose similarity-only branch (T + HIGH_MARGIN) sits ``margin`` above the most similar
    negative ``top``; never below the default T, never above 0.9."""
    return round(max(DEFAULT_THRESHOLD, min(0.9, top + margin - HIGH_MARGIN)), 3)


def _state(set_id: str, parts: GateParts, gate: GateSetting, threshold: float) -> GateState:
    return GateState((ActiveSet(set_id, gate_only_artifacts(parts, gate), threshold, 0.0),))


def gate(state: GateState, data: RwkuData, probes: Sequence[Probe], *, raw: bool = False) -> list[list[GateMatch]]:
    """The gate's matches per probe: the query as a user would type it, read as ``Guard.gate`` reads a
    prompt (every window and re-spelling), or with ``raw`` embedded once as the paper does."""
    if not probes:
        return []
    if raw:
        return state.match(data.windows[[data.groups[p.row][0] for p in probes]], [p.query for p in probes])
    return state.match_groups(data.windows, [data.groups[p.row] for p in probes],
                              names=[data.names[p.row] for p in probes])


def opens(state: GateState, data: RwkuData, probes: Sequence[Probe], *, raw: bool = False) -> list[bool]:
    """Gate decision per probe (``gate``)."""
    return [bool(m) for m in gate(state, data, probes, raw=raw)]


#: Why a level-3 probe leaves the default gate closed (``why_missed``), in report order.
MISS_REASONS = {
    "unnamed_near": "names no spelling of the target; as close to a passage as T to T + 0.15, where the "
                    "subject rule waits for a name (questions about the target's works look the same)",
    "unnamed_far": "names no spelling of the target and is under T from every passage (the paper gate "
                   "misses it too)",
    "named_far": "names the target, but is further than T - 0.25 from every passage",
    "other": "closed for another reason",
}
#: Examples kept per attack type and reason.
MISS_EXAMPLES = 2


def why_missed(state: GateState, data: RwkuData, probe: Probe) -> tuple[str, float]:
    """(reason key of ``MISS_REASONS``, best passage similarity) for a probe the gate left closed."""
    active = state.sets[0]
    art, t = active.artifacts, active.threshold
    if art.doc_embeddings is None:
        return "other", float("nan")
    s = float((data.windows[data.groups[probe.row]] @ art.doc_embeddings.numpy().T).max())
    named = any(names_subject(x, subject) for subject in art.subjects for x in data.names[probe.row])
    if named:
        return ("named_far" if s < t - SUBJECT_LOW_MARGIN else "other"), s
    return ("unnamed_near" if s >= t else "unnamed_far"), s


def misses(state: GateState, data: RwkuData, decided: Sequence[tuple[Probe, bool]],
           out: dict[str, Any], listing: list[dict[str, Any]] | None = None) -> None:
    """Add the level-3 probes ``decided`` left closed to ``out`` (counts per attack and reason, and a
    few examples), and every one of them to ``listing``, in place."""
    for probe, opened in decided:
        if opened or probe.level != "3":
            continue
        reason, s = why_missed(state, data, probe)
        if listing is not None:
            listing.append({"target": probe.subject, "attack": probe.attack, "reason": reason,
                            "similarity": round(s, 3), "query": probe.query})
        row = out.setdefault(probe.attack, {})
        cell = row.setdefault(reason, {"n": 0, "examples": []})
        cell["n"] += 1
        if len(cell["examples"]) < MISS_EXAMPLES:
            cell["examples"].append({"target": probe.subject, "query": probe.query, "similarity": round(s, 3)})


def gate_run(embedder: Any, data: RwkuData, *, seed: int = 0) -> dict[str, Any]:
    """Per-target gate decisions for every variant, aggregated (see ``aggregate``)."""
    rng = random.Random(seed)
    forget_all = [p for p in data.probes if p.kind == "forget"]
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    thresholds: dict[str, list[float]] = defaultdict(list)
    modes: dict[str, list[str]] = defaultdict(list)
    states: dict[str, list[ActiveSet]] = {AUTO: [], HYBRID: [], SUBJECT: []}
    missed: dict[str, Any] = {}
    listing: list[dict[str, Any]] = []
    for i, target in enumerate(data.targets):
        forget, neighbor = data.of(target, "forget"), data.of(target, "neighbor")
        others = [p for p in forget_all if p.subject != target]
        other = rng.sample(others, min(OTHER_SAMPLE, len(others)))
        for variant, (parts, gate, t) in variant_parts(embedder, target, data.passages[target]).items():
            state = _state(target, parts, gate, t)
            modes[variant].append(gate)
            thresholds[variant].append(t)
            raw = variant == PAPER  # the paper's baseline embeds the prompt once; ours read it as served
            decided = list(zip(forget, opens(state, data, forget, raw=raw), strict=True))
            records[variant].append({
                "target": target,
                "forget": decided,
                "neighbor": list(zip(neighbor, opens(state, data, neighbor, raw=raw), strict=True)),
                "other": opens(state, data, other, raw=raw)})
            if variant == AUTO:
                misses(state, data, decided, missed, listing)
            if variant in states:
                states[variant].append(state.sets[0])
        if i % 20 == 0:
            logger.info("rwku gate: %d/%d targets", i + 1, len(data.targets))
    out = {v: aggregate(records[v]) | {"threshold_mean": float(np.mean(thresholds[v])),
                                       "rules": dict(Counter(modes[v]))} for v in VARIANTS}
    out["all_active"] = {v: all_active(GateState(tuple(sets)), data, rng) for v, sets in states.items()}
    out[AUTO]["misses"] = missed
    out[AUTO]["missed_probes"] = listing  # every level-3 probe left closed, with its reason
    return out


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over targets (SPEC.md), pooled rates over probes, per attack type, and per target."""
    per_target = []
    for r in records:
        f, n = r["forget"], r["neighbor"]
        per_target.append({
            "target": r["target"],
            **{f"level{lv}": rate([o for p, o in f if p.level == lv]) for lv in ("1", "2", "3")},
            "forget": rate([o for _, o in f]), "neighbor": rate([o for _, o in n]),
            "neighbor_unnamed": rate([o for p, o in n if not names_target(p.query, r["target"])]),
            "other": rate(r["other"])})
    forget = [(p, o) for r in records for p, o in r["forget"]]
    neighbor = [(p, o, r["target"]) for r in records for p, o in r["neighbor"]]
    attacks = sorted({p.attack for p, _ in forget if p.level == "3"})
    return {
        "recall": {f"level{lv}": _mean([t[f"level{lv}"] for t in per_target]) for lv in ("1", "2", "3")},
        "false_open": {k: _mean([t[k] for t in per_target]) for k in ("neighbor", "neighbor_unnamed", "other")},
        "pooled": {
            **{f"level{lv}": rate([o for p, o in forget if p.level == lv]) for lv in ("1", "2", "3")},
            "neighbor": rate([o for _, o, _ in neighbor]),
            "neighbor_level1": rate([o for p, o, _ in neighbor if p.level == "1"]),
            "neighbor_level2": rate([o for p, o, _ in neighbor if p.level == "2"]),
            "neighbor_unnamed": rate([o for p, o, t in neighbor if not names_target(p.query, t)]),
            "neighbor_named_share": rate([names_target(p.query, t) for p, _, t in neighbor]),
            "other": rate([o for r in records for o in r["other"]])},
        "attack": {a: {"n": sum(1 for p, _ in forget if p.level == "3" and p.attack == a),
                       "recall": rate([o for p, o in forget if p.level == "3" and p.attack == a])}
                   for a in attacks},
        "per_target": per_target,
    }


def all_active(state: GateState, data: RwkuData, rng: random.Random) -> dict[str, Any]:
    """Every target's set active at once: does a probe open its own target's set, another one, any?"""
    forget = [p for p in data.probes if p.kind == "forget"]
    neighbor = [p for p in data.probes if p.kind == "neighbor"]
    if len(data.targets) > QUICK_TARGETS:
        forget = rng.sample(forget, min(ALL_ACTIVE_SAMPLE, len(forget)))
        neighbor = rng.sample(neighbor, min(ALL_ACTIVE_SAMPLE, len(neighbor)))
    def matched(probes: list[Probe]) -> list[set[str]]:
        return [{m.forget_set_id for m in ms} for ms in gate(state, data, probes)]
    fm, nm = matched(forget), matched(neighbor)
    return {"targets": len(state.sets), "forget_probes": len(forget), "neighbor_probes": len(neighbor),
            "recall_own": rate([p.subject in m for p, m in zip(forget, fm, strict=True)]),
            "recall_any": rate([bool(m) for m in fm]),
            "forget_opens_another": rate([bool(m - {p.subject}) for p, m in zip(forget, fm, strict=True)]),
            "neighbor_any": rate([bool(m) for m in nm]),
            "neighbor_own": rate([p.subject in m for p, m in zip(neighbor, nm, strict=True)])}
