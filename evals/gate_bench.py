"""Benchmark ``tofu-gate``: gate quality of GUARD-IT on TOFU (recall, false opens, ROC, calibration).

For forget01/05/10 the forget set is the split's QA pairs; positives are its questions and their
paraphrases, negatives are retain90, holdout10, real_authors and world_facts questions. Only the
embedder is needed: the gate never looks at the LLM.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evals.data import tofu
from steering.config import DEFAULT_THRESHOLD, HYBRID, PAPER, BuildConfig, GateRule, GateSetting
from steering.forget_set import QAPair, make_documents
from steering.gates import ActiveSet, GateState
from steering.vectors import GateParts, build_gate, embed, gate_only_artifacts

SPLITS = ("forget01", "forget05", "forget10")
NEGATIVES = ("retain90", "holdout10", "real_authors", "world_facts")
GATES: tuple[GateRule, ...] = (HYBRID, PAPER)
SWEEP = tuple(round(t, 2) for t in np.arange(0.30, 0.91, 0.02))


@dataclass(frozen=True)
class PromptSet:
    """Prompts with their embeddings (embedded once, reused across gates and thresholds)."""

    texts: list[str]
    embeddings: np.ndarray  # [n, d_embed]


def _prompts(embedder: Any, texts: Sequence[str]) -> PromptSet:
    return PromptSet(list(texts), embed(embedder, texts))


def open_rate(state: GateState, prompts: PromptSet) -> float:
    """Fraction of prompts for which at least one cluster opens."""
    matches = state.match(prompts.embeddings, prompts.texts)
    return sum(1 for m in matches if m) / max(1, len(matches))


def _state(parts: GateParts, gate: GateSetting, threshold: float) -> GateState:
    return GateState((ActiveSet("eval", gate_only_artifacts(parts, gate), threshold, 0.0),))


def calibrate_threshold(parts: GateParts, gate: GateSetting, negatives: PromptSet, *, max_open: float = 0.01) -> float:
    """The smallest T on the sweep at which at most ``max_open`` of ``negatives`` open the gate."""
    for t in SWEEP:
        if open_rate(_state(parts, gate, t), negatives) <= max_open:
            return t
    return SWEEP[-1]


def run(embedder: Any, *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the benchmark; returns the report section (SPEC.md shape per split, plus variants).

    ``quick`` subsamples only the large negative sets (retain90, holdout10) to 400 each; every split
    and every forget question is kept.
    """
    rng = random.Random(seed)
    negatives: dict[str, PromptSet] = {}
    for name in NEGATIVES:
        questions = [r["question"] for r in tofu(name)]
        if quick and len(questions) > 400:
            questions = rng.sample(questions, 400)
        negatives[name] = _prompts(embedder, questions)
    # Threshold calibration uses holdout10 (authors in no split) and is evaluated on retain90.
    out: dict[str, Any] = {}
    for split in SPLITS:
        rows = tofu(f"{split}_perturbed")
        docs = make_documents(qa=[QAPair(r["question"], r["answer"]) for r in rows])
        forget = _prompts(embedder, [r["question"] for r in rows])
        para = _prompts(embedder, [r["paraphrased_question"] for r in rows])
        variants: dict[str, Any] = {}
        for gate in GATES:
            parts = build_gate(embedder, docs, BuildConfig(gate=gate))
            calibrated = calibrate_threshold(parts, gate, negatives["holdout10"])
            for label, t in (("fixed", DEFAULT_THRESHOLD), ("calibrated", calibrated)):
                state = _state(parts, gate, t)
                variants[f"{gate}/{label}"] = {
                    "gate": gate, "threshold": t, "k": parts.clustering.k, "entities": len(parts.entities),
                    "recall_forget": open_rate(state, forget), "recall_paraphrased": open_rate(state, para),
                    "false_open": {n: open_rate(state, p) for n, p in negatives.items()},
                }
            variants[f"{gate}/roc"] = [
                {"threshold": t, "recall_paraphrased": open_rate(_state(parts, gate, t), para),
                 "false_open_retain90": open_rate(_state(parts, gate, t), negatives["retain90"])}
                for t in SWEEP[::2 if quick else 1]]
        main = variants[f"{HYBRID}/fixed"]
        out[split] = {**{k: main[k] for k in ("threshold", "recall_forget", "recall_paraphrased", "false_open")},
                      "gate": HYBRID, "variants": variants}
    return out
