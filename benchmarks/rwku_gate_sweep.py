"""The subject gate's recall / false-open trade-off on RWKU (GUARD-IT arXiv 2605.12765, our gate rule).

The subject rule opens a prompt that names the subject when its best document similarity s reaches
T - SUBJECT_LOW_MARGIN, and any prompt when s >= T + margin (margin = HIGH_MARGIN = 0.15 in the
product). This script rebuilds each target's gate exactly as ``guardit eval --benchmark rwku`` does
(first 200 passages, names mined with the ``auto`` rule, ``DEFAULT_THRESHOLD``), records s and the name check per
probe once, and prints recall per level and false opens on neighbour probes for several margins,
so the product's choice can be read off a curve instead of one point.

Usage: python benchmarks/rwku_gate_sweep.py [--quick] [--margins 0.15,0.10,0.05,0.0]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from evals import rwku_bench  # noqa: E402
from steering.config import DEFAULT_THRESHOLD  # noqa: E402
from steering.entities import names_subject  # noqa: E402
from steering.forget_set import make_documents  # noqa: E402
from steering.gates import HIGH_MARGIN, SUBJECT_LOW_MARGIN  # noqa: E402
from steering.loading import load_embedder  # noqa: E402
from steering.vectors import embed, gate_names  # noqa: E402


def emit(line: str) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 10 targets")
    parser.add_argument("--margins", default="0.15,0.10,0.05,0.0")
    args = parser.parse_args()
    margins = [float(m) for m in args.margins.split(",")]
    embedder = load_embedder("all-minilm-l6-v2")
    data = rwku_bench.load(embedder, quick=args.quick)
    # per probe group: (best document similarity, names the subject)
    seen: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for target in data.targets:
        texts = make_documents(data.passages[target]).gate_texts()
        docs = embed(embedder, texts)  # [n_docs, d_embed]
        mode, _, subjects = gate_names(texts, np.zeros(len(texts), dtype=np.int64), "auto")
        for p in data.of(target, "forget") + data.of(target, "neighbor"):
            s = float((docs @ data.embeddings[p.row]).max())
            named = mode == "subject" and any(names_subject(p.query, s) for s in subjects)
            if p.kind == "forget":
                group = f"L{p.level}"
            else:
                group = "neighbour named" if rwku_bench.names_target(p.query, target) else "neighbour unnamed"
            seen[group].append((s, named))
            if p.kind == "neighbor":
                seen["neighbour"].append((s, named))

    def rate(group: str, margin: float) -> float:
        t = DEFAULT_THRESHOLD
        return float(np.mean([s >= t + margin or (named and s >= t - SUBJECT_LOW_MARGIN)
                              for s, named in seen[group]]))

    emit(f"RWKU, {len(data.targets)} targets, auto gate rule, T = {DEFAULT_THRESHOLD}; pooled over probes "
          f"(product margin {HIGH_MARGIN})")
    emit("| similarity-only margin | recall L1 | recall L2 | recall L3 | FO neighbour "
         "| FO neighbour, unnamed |")
    emit("|---|---|---|---|---|---|")
    for m in margins:
        cells = [rate(g, m) for g in ("L1", "L2", "L3", "neighbour", "neighbour unnamed")]
        emit(f"| {m:.2f} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    n = {g: len(v) for g, v in seen.items()}
    emit(f"probes: {n}")


if __name__ == "__main__":
    main()
