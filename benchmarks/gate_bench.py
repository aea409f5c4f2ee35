"""Gate cost per request: guardit's whole-input gate (every turn, in windows) against the paper's single
embedding of the prompt, in the same run, for short and long prompts.

Prints a table of p50 / p90 milliseconds per request and the ratio. Forget sets: TOFU forget01 and
forget10 (built with a fixed alpha: no calibration). Usage: python benchmarks/gate_bench.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from steering import EMBEDDED_MODEL, BuildConfig, Guard, load_embedder, load_model  # noqa: E402
from steering.forget_set import make_documents  # noqa: E402
from steering.types import Prompt  # noqa: E402
from steering.vectors import embed, neutral_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Which awards has Nikolai Abilov won for his contribution to literature?"


def filler(tokens: int, guard: Guard) -> str:
    """Neutral text of about ``tokens`` model tokens."""
    lines, out = neutral_corpus(), []
    while len(guard.tokenizer.encode(" ".join(out))) < tokens:
        out.extend(lines)
    return " ".join(out)


def timed(fn: object, repeats: int) -> tuple[float, float]:
    """p50 and p90 milliseconds of ``fn()``."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - start) * 1000)
    runs.sort()
    return statistics.median(runs), runs[int(0.9 * (len(runs) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "guardit-test" / "models")
    args = parser.parse_args()
    lm = load_model(EMBEDDED_MODEL, cache_dir=args.cache)
    guard = Guard(lm.model, lm.tokenizer, load_embedder())
    for split in ("forget01", "forget10"):
        rows = [json.loads(line) for line in (REPO / "data" / "tofu" / f"{split}.jsonl").open()]
        docs = make_documents(qa=[(r["question"], r["answer"]) for r in rows])
        guard.activate(split, guard.build(docs, config=BuildConfig(alpha=0.5)), threshold=0.55, alpha=0.5)

    cases: dict[str, Prompt] = {"question (~20 tokens)": [{"role": "user", "content": QUESTION}]}
    for size in (1000, 4000):
        pad = filler(size - 40, guard)
        cases[f"filler + question ({size} tokens)"] = [{"role": "user", "content": f"{pad}\n\n{QUESTION}"}]
    cases["system filler + question (4000 tokens)"] = [{"role": "system", "content": filler(3960, guard)},
                                                        {"role": "user", "content": QUESTION}]
    state = guard.state
    print(f"{'prompt':40} {'whole-input p50/p90 ms':>24} {'paper p50/p90 ms':>18} {'ratio p50':>10} {'opens':>6}")
    for name, prompt in cases.items():
        text = "\n".join(m["content"] for m in prompt) if not isinstance(prompt, str) else prompt
        ours = timed(lambda p=prompt: guard.gate([p], state), args.repeats)  # type: ignore[misc]
        paper = timed(lambda t=text: state.match(embed(guard.embedder, [t]), [t]), args.repeats)  # type: ignore[misc]
        opens = bool(guard.gate([prompt], state)[0])
        print(f"{name:40} {ours[0]:11.1f} / {ours[1]:<10.1f} {paper[0]:8.1f} / {paper[1]:<7.1f} "
              f"{ours[0] / paper[0]:10.2f} {str(opens):>6}")


if __name__ == "__main__":
    main()
