"""Does GUARD-IT (arXiv 2605.12765) hold in bfloat16? Greedy answers of the embedded model in float32
and bfloat16 on a fixed prompt set, steered and unsteered, and the closed-row guarantee in bfloat16.

One forget set (``examples/forget-shakespeare.jsonl``, which the model knows) is built once in float32
and activated in both dtypes (steering vectors are float32 whatever the model's dtype; the build in
bfloat16 is compared too). Prompts: the set's 12 questions (the gate opens: steered rows) and 24
TOFU world_facts questions (closed rows). Prints token agreement bf16 vs float32 per kind of row, how
often steering changed the answer and removed "Shakespeare" in each dtype, and whether closed rows
of a mixed bfloat16 batch are bit-identical (token ids and logits) to the same batch run unsteered.
Usage: python benchmarks/dtype_check.py [--tokens 24] [--alpha 0.35]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from steering import Guard, SamplingParams, load_embedder, load_model, make_documents  # noqa: E402
from steering.config import BuildConfig  # noqa: E402
from steering.decoding import prefill  # noqa: E402
from steering.guard import batch_plans  # noqa: E402
from steering.vectors import neutral_corpus  # noqa: E402


def emit(line: str) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def agreement(a: list[tuple[int, ...]], b: list[tuple[int, ...]]) -> tuple[float, float]:
    """(rows identical, mean fraction of tokens before the first difference)."""
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    prefix = []
    for x, y in zip(a, b, strict=True):
        n = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        prefix.append(n / max(len(x), len(y), 1))
    return same, sum(prefix) / len(prefix)


def closed_rows_identical(guard: Guard, chats: list[Any], steered_mask: list[bool]) -> tuple[bool, bool]:
    """Prefill a mixed batch steered and unsteered: are the closed rows' logits and greedy tokens equal?"""
    plans = guard.plan(chats)
    ids = [guard.tokenizer.encode(guard.render(c), add_special_tokens=False) for c in chats]
    pad = guard.tokenizer.pad_token_id or 0
    with torch.inference_mode():
        with guard.hooks.steer(batch_plans(plans)):
            _, steered = prefill(guard.model, ids, pad)
        _, plain = prefill(guard.model, ids, pad)
    closed = torch.tensor([not s for s in steered_mask])
    logits_equal = bool(torch.equal(steered[closed], plain[closed]))
    tokens_equal = bool(torch.equal(steered[closed].argmax(-1), plain[closed].argmax(-1)))
    return logits_equal, tokens_equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test")) / "models")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("GUARDIT_NUM_THREADS", "2")))
    qa = [(r["question"], r["answer"]) for r in read_jsonl(REPO / "examples" / "forget-shakespeare.jsonl")]
    facts = [r["question"] for r in read_jsonl(REPO / "data" / "tofu" / "world_facts.jsonl")[:24]]
    chats = [[{"role": "user", "content": q}] for q in [q for q, _ in qa] + facts]
    params = SamplingParams(max_new_tokens=args.tokens)
    embedder = load_embedder()
    docs = make_documents(qa=qa)
    cache = args.cache if args.cache.is_dir() else Path(tempfile.mkdtemp(prefix="guardit-dtype-"))
    guards: dict[str, Guard] = {}
    built: dict[str, Any] = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        loaded = load_model("smollm2-135m-instruct", cache_dir=cache, dtype=dtype)
        guards[name] = Guard(loaded.model, loaded.tokenizer, embedder)
        built[name] = guards[name].build(docs, retain=neutral_corpus()[:16], config=BuildConfig(alpha=args.alpha))
    art = built["float32"]
    cos = torch.nn.functional.cosine_similarity(built["float32"].psvs, built["bfloat16"].psvs, dim=-1)
    emit(f"build in bfloat16 vs float32: PSV cosine min {float(cos.min()):.4f}, mean norm "
         f"{built['bfloat16'].mean_norm:.2f} vs {built['float32'].mean_norm:.2f}, clusters "
         f"{built['bfloat16'].psvs.shape[0]} vs {art.psvs.shape[0]}")
    out: dict[str, dict[str, list[Any]]] = {}
    for name, guard in guards.items():
        guard.activate("shakespeare", art, threshold=0.55, alpha=args.alpha)
        with torch.inference_mode():
            steered = guard.generate(chats, params)
            plain = guard.generate(chats, params, steer=False)
        out[name] = {"steered": steered, "plain": plain}
    gate = [g.steered for g in out["float32"]["steered"]]
    emit(f"gate open {sum(gate)}/{len(gate)} prompts (the same in both dtypes: "
         f"{gate == [g.steered for g in out['bfloat16']['steered']]})")
    emit(f"\n{'rows':<24} | {'n':>3} | {'identical bf16 = f32':>20} | {'mean agreeing prefix':>20}")
    emit("-" * 76)
    for label, arm, pick in (("steered (gate open)", "steered", True), ("unsteered, same prompts", "plain", True),
                             ("closed (gate closed)", "steered", False)):
        rows = [i for i, g in enumerate(gate) if g == pick]
        a = [out["float32"][arm][i].token_ids for i in rows]
        b = [out["bfloat16"][arm][i].token_ids for i in rows]
        same, prefix = agreement(a, b)
        emit(f"{label:<24} | {len(rows):>3} | {same:>20.3f} | {prefix:>20.3f}")
    for name in guards:
        opened = [i for i, g in enumerate(gate) if g]
        changed = sum(out[name]["steered"][i].text != out[name]["plain"][i].text for i in opened)
        named = sum("shakespeare" in out[name]["steered"][i].text.lower() for i in opened)
        base = sum("shakespeare" in out[name]["plain"][i].text.lower() for i in opened)
        emit(f"{name}: steering changed {changed}/{len(opened)} open answers; 'Shakespeare' in "
             f"{base} unsteered -> {named} steered")
    logits_equal, tokens_equal = closed_rows_identical(guards["bfloat16"], chats, gate)
    emit(f"bfloat16 mixed batch: closed rows bit-identical to the batch run unsteered: logits {logits_equal}, "
         f"greedy tokens {tokens_equal}")
    closed = [i for i, g in enumerate(gate) if not g]
    for name in guards:
        same = all(out[name]["steered"][i].token_ids == out[name]["plain"][i].token_ids for i in closed)
        emit(f"{name}: closed rows of the steered batch equal the unsteered batch token for token: {same}")


if __name__ == "__main__":
    main()
