"""How long a QA forget set takes to become active: embed, cluster, vectors and calibration seconds.

Builds TOFU forget01 (40 QA) and forget10 (400 QA) from the repo's data/tofu with the embedded model
and the server's defaults (auto gate, calibrated alpha), and prints one row per size with wall and
CPU seconds per phase. The target is a 400-QA set active in 60 s on two quiet cores; wall seconds
on a machine shared with other jobs overstate it (the CPU columns less so).
Usage: python benchmarks/build_bench.py [--sizes 40,400] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from steering import EMBEDDED_MODEL, Guard, load_embedder, load_model, make_documents  # noqa: E402
from steering.calibrate import calibrate_alpha  # noqa: E402
from steering.config import DEFAULT_THRESHOLD, default_alpha  # noqa: E402
from steering.forget_set import QAPair  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = {40: "forget01.jsonl", 200: "forget05.jsonl", 400: "forget10.jsonl"}
PHASES = ("embed", "cluster", "vectors", "calibration")


class Clock:
    """Wall and CPU time at each phase boundary, from the build's progress callback."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, (time.perf_counter(), time.process_time()))

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage == "embed" and done == 0:
            self.mark("start")
        elif stage == "cluster" and done == 0:
            self.mark("embedded")
        elif stage == "cluster" and done >= total:
            self.mark("clustered")

    def span(self, a: str, b: str) -> tuple[float, float]:
        return self.marks[b][0] - self.marks[a][0], self.marks[b][1] - self.marks[a][1]


def run(guard: Guard, size: int) -> dict[str, object]:
    lines = (ROOT / "data" / "tofu" / FILES[size]).read_text().splitlines()
    rows = [json.loads(line) for line in lines if line]
    docs = make_documents(qa=[QAPair(r["question"], r["answer"]) for r in rows])
    clock = Clock()
    artifacts = guard.build(docs, progress=clock.progress)
    clock.mark("built")
    cal = calibrate_alpha(guard, docs, artifacts, threshold=DEFAULT_THRESHOLD,
                          fallback=default_alpha("smollm2-135m-instruct"))
    clock.mark("calibrated")
    spans = {"embed": clock.span("start", "embedded"), "cluster": clock.span("embedded", "clustered"),
             "vectors": clock.span("clustered", "built"), "calibration": clock.span("built", "calibrated")}
    return {"size": size, "k": artifacts.k, "spans": spans, "total": clock.span("start", "calibrated"),
            "alpha": cal.alpha, "known": cal.known, "probes": cal.probes, "rungs": len(cal.tried)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="40,400", help="comma-separated: 40, 200 or 400")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "guardit-test" / "models")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(EMBEDDED_MODEL, cache_dir=args.cache)
    guard = Guard(lm.model, lm.tokenizer, load_embedder())
    guard.embedder.encode(["warm-up"])

    print(f"forget-set build, {EMBEDDED_MODEL}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("wall s (CPU s) per phase; CPU seconds are summed over threads")
    header = (f"{'items':>5} | {'k':>3} | " + " | ".join(f"{p:>15}" for p in PHASES)
              + f" | {'total':>15} | alpha | known/probes | rungs")
    print(header)
    print("-" * len(header), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(guard, size)
        spans = r["spans"]
        assert isinstance(spans, dict)
        cells = " | ".join(f"{spans[p][0]:>6.1f} ({spans[p][1]:>6.1f})" for p in PHASES)
        total = r["total"]
        assert isinstance(total, tuple)
        print(f"{r['size']:>5} | {r['k']:>3} | {cells} | {total[0]:>6.1f} ({total[1]:>6.1f}) | "
              f"{r['alpha']:.2f}  | {r['known']:>5}/{r['probes']:<6} | {r['rungs']}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}; the retain corpus is pooled once per process "
          "(the first size pays it)")


if __name__ == "__main__":
    main()
