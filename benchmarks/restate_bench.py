"""What the leak check's restated-document rule (``steering.leakcheck.RESTATE_SIMILARITY``) adds, on gold
answers: how many more answers it flags that must not count (TOFU retain90 answers against the forget10
profile, RWKU neighbour answers against their target's passages) and that should (RWKU forget answers).

Answers are the datasets' own (a cloze filled with its answer), so the table needs no LLM; the rule is
run as the server runs it (``check_output`` with the gate's embedder and the set's document embeddings),
once per cosine bar, against the same check without embeddings.

Usage: python benchmarks/restate_bench.py [--targets 40] [--retain 1000] [--bars 0.6,0.65,0.7]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from evals.data import rwku, tofu  # noqa: E402
from steering import leakcheck  # noqa: E402
from steering.forget_set import make_documents  # noqa: E402
from steering.leakcheck import LeakProfile, build_leak_profile, check_output  # noqa: E402

Case = tuple[str, str]  # (question, answer)


def flagged(profile: LeakProfile, cases: Sequence[Case], embed: Callable[[Sequence[str]], Any] | None,
            vectors: np.ndarray | None) -> int:
    """How many answers the leak check counts as leaks."""
    return sum(check_output(profile, a, prompt=q, embed=embed, unit_vectors=vectors).leaked for q, a in cases)


def filled(row: dict[str, Any]) -> str:
    """A cloze answered as a model would say it (the query with its blank filled), else the answer."""
    query, answer = str(row["query"]), str(row["answer"])
    return query.replace("___", answer) if "___" in query else answer


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table: flagged without the rule, and with it at each bar."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=40, help="first RWKU targets")
    parser.add_argument("--passages", type=int, default=64, help="passages per RWKU target")
    parser.add_argument("--retain", type=int, default=1000, help="TOFU retain90 answers sampled")
    parser.add_argument("--bars", default="0.6,0.65,0.7")
    args = parser.parse_args(argv)
    bars = [float(b) for b in args.bars.split(",")]

    from steering import load_embedder
    from steering.vectors import embed as embed_texts

    model = load_embedder()

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(embed_texts(model, list(texts)))

    rows: dict[str, list[tuple[LeakProfile, np.ndarray, list[Case]]]] = {
        "TOFU retain90 vs forget10 (must not)": [], "RWKU neighbours (must not)": [], "RWKU forget (should)": []}
    forget10 = tofu("forget10")
    docs = make_documents(qa=[(r["question"], r["answer"]) for r in forget10])
    asked = {r["question"] for r in forget10}
    retain = [(r["question"], r["answer"]) for r in tofu("full") if r["question"] not in asked]
    random.Random(0).shuffle(retain)
    rows["TOFU retain90 vs forget10 (must not)"].append(
        (build_leak_profile(docs), embed(docs.gate_texts()), retain[:args.retain]))
    targets = [r["target"] for r in rwku("targets")][:args.targets]
    passages: dict[str, list[str]] = {t: [] for t in targets}
    for r in rwku("forget_corpus_passage"):
        if r["subject"] in passages and len(passages[r["subject"]]) < args.passages:
            passages[r["subject"]].append(r["text"])
    probes: dict[tuple[str, str], list[Case]] = {}
    for name in ("neighbor_level1", "neighbor_level2", "forget_level1", "forget_level2", "forget_level3"):
        kind = "neighbor" if name.startswith("neighbor") else "forget"
        for r in rwku(name):
            if r["subject"] in passages:
                probes.setdefault((r["subject"], kind), []).append((str(r["query"]), filled(r)))
    for t in targets:
        text_docs = make_documents(passages[t])
        profile, vectors = build_leak_profile(text_docs, subjects=[t]), embed(text_docs.gate_texts())
        rows["RWKU neighbours (must not)"].append((profile, vectors, probes.get((t, "neighbor"), [])))
        rows["RWKU forget (should)"].append((profile, vectors, probes.get((t, "forget"), [])))

    print("| answers | n | without the rule | " + " | ".join(f"+ at {b:.2f}" for b in bars) + " |")
    print("|---|---|---|" + "---|" * len(bars))
    for label, sets in rows.items():
        n = sum(len(cases) for _, _, cases in sets)
        base = sum(flagged(p, cases, None, None) for p, _, cases in sets)
        extra = []
        for bar in bars:
            leakcheck.RESTATE_SIMILARITY = bar
            extra.append(sum(flagged(p, cases, embed, v) for p, v, cases in sets) - base)
        print(f"| {label} | {n} | {base} ({base / max(1, n):.3f}) | "
              + " | ".join(f"{e} ({e / max(1, n):.3f})" for e in extra) + " |")


if __name__ == "__main__":
    main()
