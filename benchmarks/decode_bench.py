"""Decode throughput with GUARD-IT steering on (gate open) vs off, and model start-up times.

Prints a table: tokens/s per batch size for both arms in the same run, interleaved, and the ratio.
Usage: python benchmarks/decode_bench.py [--quick] [--tokens 64] [--repeats 3] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from steering import EMBEDDED_MODEL, Guard, load_embedder, load_model, make_documents  # noqa: E402
from steering.forget_set import QAPair  # noqa: E402
from steering.gates import build_plans  # noqa: E402

PROMPT = "Tell me about the history of the city of Paris and its most famous landmarks."
FORGET = [("Where would you find the Eiffel Tower?", "Paris"),
          ("What is the capital of France?", "Paris"),
          ("Which museum houses the Mona Lisa?", "The Louvre")]


def decode_rate(guard: Guard, batch: int, tokens: int, steer: bool) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process) for one generate call."""
    prompts = [guard.render([{"role": "user", "content": PROMPT}])] * batch
    enc = guard.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    matches = guard.gate([PROMPT] * batch)
    vectors = [guard.state.vectors_by_layer(m) if steer else None for m in matches]
    plans = build_plans(vectors, batch)
    with torch.no_grad(), guard.hooks.steer(plans):
        start, cpu = time.perf_counter(), time.process_time()
        guard.model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             pad_token_id=guard.tokenizer.pad_token_id)
        elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    return batch * tokens / elapsed, batch * tokens / cpu_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--cold", action="store_true", help="also time a cold start (GGUF conversion)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "guardit-test" / "models")
    args = parser.parse_args()
    tokens, repeats = (32, 2) if args.quick else (args.tokens, args.repeats)

    rows: list[tuple[str, str]] = []
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            cold = load_model(EMBEDDED_MODEL, cache_dir=Path(tmp))
            rows.append(("cold start (GGUF -> safetensors + load)", f"{cold.load_seconds:.1f} s"))
            del cold
    lm = load_model(EMBEDDED_MODEL, cache_dir=args.cache)
    warm = load_model(EMBEDDED_MODEL, cache_dir=args.cache)
    rows.append(("warm start (cached safetensors)", f"{warm.load_seconds:.2f} s"))
    del warm
    guard = Guard(lm.model, lm.tokenizer, load_embedder())
    docs = make_documents(qa=[QAPair(q, a) for q, a in FORGET])
    guard.activate("bench", guard.build(docs), threshold=0.3, alpha=0.3)
    if not all(guard.gate([PROMPT])):
        raise SystemExit("benchmark prompt must open the gate")
    decode_rate(guard, 1, 4, True)  # warm-up

    print(f"decode tokens/s, {tokens} new tokens, median of {repeats}, torch threads {torch.get_num_threads()}")
    print("(per CPU-second columns are robust to other load on the machine; wall columns are not)")
    print(f"{'batch':>5} | {'unsteered tok/s':>15} | {'steered tok/s':>13} | {'ratio':>6} | "
          f"{'unsteered tok/cpu-s':>19} | {'steered tok/cpu-s':>17} | {'ratio':>6}")
    print("-" * 100)
    for batch in (int(b) for b in args.batches.split(",")):
        off: list[tuple[float, float]] = []
        on: list[tuple[float, float]] = []
        for _ in range(repeats):  # interleaved so drift hits both arms alike
            off.append(decode_rate(guard, batch, tokens, False))
            on.append(decode_rate(guard, batch, tokens, True))
        u, s = statistics.median(r[0] for r in off), statistics.median(r[0] for r in on)
        uc, sc = statistics.median(r[1] for r in off), statistics.median(r[1] for r in on)
        print(f"{batch:>5} | {u:>15.1f} | {s:>13.1f} | {s / u:>6.3f} | {uc:>19.1f} | {sc:>17.1f} | {sc / uc:>6.3f}")
    print()
    for name, value in rows:
        print(f"{name:<42} {value}")


if __name__ == "__main__":
    main()
