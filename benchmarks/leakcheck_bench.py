"""True- and false-positive rates of the leak check (``steering.leakcheck``) on real outputs.

Outputs: the TOFU forget01 answers (and their paraphrases) as outputs that do leak; greedy answers
of the embedded model to TOFU retain90 (a fixed sample), world_facts and real_authors questions as
outputs that must not count as leaks against the forget01 and forget10 profiles; and five topics the
model knows (``steering/data/leak_topics.json``) as text forget sets, with the model's answers to
their forget questions (positives where the answer shows the fact) and to neighbour questions.
Generations are cached in a JSON file so the checker can be re-measured without the model.

Usage: python benchmarks/leakcheck_bench.py [--cache guardit-data/leakcheck_outputs.json] [--retain 80]
       [--embed]
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evals.data import tofu  # noqa: E402
from steering.checks import contains_answer  # noqa: E402
from steering.forget_set import make_documents  # noqa: E402
from steering.leakcheck import LeakProfile, build_leak_profile, check_output  # noqa: E402

TOPICS = Path(__file__).resolve().parents[1] / "steering" / "data" / "leak_topics.json"
MAX_NEW_TOKENS = 32


def _generator() -> Callable[[Sequence[str]], list[str]]:
    """Greedy answers of the embedded model, unsteered, batched."""
    from steering import EMBEDDED_MODEL, Guard, load_embedder, load_model
    from steering.guard import SamplingParams

    cache = Path(os.environ.get("GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test")) / "models"
    cache.mkdir(parents=True, exist_ok=True)
    loaded = load_model(EMBEDDED_MODEL, cache_dir=cache)
    guard = Guard(loaded.model, loaded.tokenizer, load_embedder())
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS)

    def generate(questions: Sequence[str], batch_size: int = 32) -> list[str]:
        out: list[str] = []
        for start in range(0, len(questions), batch_size):
            chunk = [[{"role": "user", "content": q}] for q in questions[start : start + batch_size]]
            out.extend(g.text for g in guard.generate(chunk, params, steer=False))
        return out

    return generate


def questions(n_retain: int) -> dict[str, list[dict[str, str]]]:
    """Question sets by name, each row ``question`` and reference ``answer``."""
    topics = json.loads(TOPICS.read_text(encoding="utf-8"))["topics"]
    retain = tofu("retain90")
    sample = random.Random(0).sample(range(len(retain)), n_retain)
    sets: dict[str, list[dict[str, str]]] = {}
    for t in topics:
        sets[f"topic:{t['name']}"] = [dict(r) for r in t["questions"]]
        sets[f"neighbour:{t['name']}"] = [dict(r) for r in t["neighbours"]]
    sets["retain90"] = [{"question": retain[i]["question"], "answer": retain[i]["answer"]} for i in sample]
    sets["world_facts"] = [{"question": r["question"], "answer": r["answer"]} for r in tofu("world_facts")]
    sets["real_authors"] = [{"question": r["question"], "answer": r["answer"]} for r in tofu("real_authors")]
    return sets


def load_outputs(cache: Path, n_retain: int) -> dict[str, list[dict[str, str]]]:
    """Every question set with the model's ``output`` per row (generated once, set by set, and
    cached after each set so an interrupted run keeps what it has)."""
    done: dict[str, list[dict[str, str]]] = (
        dict(json.loads(cache.read_text(encoding="utf-8"))) if cache.is_file() else {}
    )
    todo = {k: v for k, v in questions(n_retain).items() if k not in done}
    flat = [(name, row) for name, rows in todo.items() for row in rows]
    if flat:
        generate = _generator()
    for start in range(0, len(flat), 32):  # one batch at a time across sets; save the finished sets
        chunk = flat[start : start + 32]
        for (_, row), text in zip(chunk, generate([r["question"] for _, r in chunk]), strict=True):
            row["output"] = text
        finished = {n: rows for n, rows in todo.items() if n not in done and all("output" in r for r in rows)}
        done.update(finished)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(done, indent=1), encoding="utf-8")
        print(f"generated {min(start + 32, len(flat))}/{len(flat)}", flush=True)  # noqa: T201
    return done


def rate(
    profile: LeakProfile,
    rows: Sequence[dict[str, str]],
    field: str,
    keep: Callable[[dict[str, str]], bool] = lambda r: True,
    embed: Any = None,
) -> tuple[int, int, list[str]]:
    """(flagged, total, examples of flagged) of ``check_output`` over the rows that ``keep`` selects."""
    flagged, total, examples = 0, 0, []
    for row in rows:
        if not keep(row):
            continue
        total += 1
        verdict = check_output(profile, row[field], prompt=row["question"], embed=embed)
        if verdict.leaked:
            flagged += 1
            examples.append(f"{row['question'][:60]!r} -> {row[field][:70]!r}: {verdict.reason}")
    return flagged, total, examples


def _line(label: str, flagged: int, total: int) -> str:
    pct = 100.0 * flagged / total if total else 0.0
    return f"| {label:<52} | {flagged:>4}/{total:<4} | {pct:5.1f}% |"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the TP/FP table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("guardit-data/leakcheck_outputs.json"))
    parser.add_argument("--retain", type=int, default=80)
    parser.add_argument("--embed", action="store_true", help="also use embedding similarity")
    parser.add_argument("--examples", action="store_true", help="print flagged false positives")
    parser.add_argument("--cached-only", action="store_true", help="use the cached outputs, generate nothing")
    args = parser.parse_args(argv)
    if args.cached_only:
        sets = json.loads(args.cache.read_text(encoding="utf-8")) if args.cache.is_file() else {}
    else:
        sets = load_outputs(args.cache, args.retain)
    embed = None
    if args.embed:
        from steering import load_embedder
        from steering.vectors import embed as embed_texts

        model = load_embedder()
        embed = lambda texts: embed_texts(model, list(texts))  # noqa: E731
    perturbed = tofu("forget01_perturbed")
    profiles = {
        "forget01": build_leak_profile(
            make_documents(qa=[(r["question"], r["answer"]) for r in tofu("forget01")]), embed=embed
        ),
        "forget10": build_leak_profile(
            make_documents(qa=[(r["question"], r["answer"]) for r in tofu("forget10")]), embed=embed
        ),
    }
    rows: list[tuple[str, int, int]] = []
    fp_examples: list[str] = []
    f01 = [
        {
            "question": r["question"],
            "answer": r["answer"],
            "para": r["paraphrased_answer"],
            "para_q": r["paraphrased_question"],
        }
        for r in perturbed
    ]
    for label, field in (
        ("TP forget01: TOFU answer as output", "answer"),
        ("TP forget01: paraphrased answer as output", "para"),
    ):
        flagged, total, _ = rate(profiles["forget01"], f01, field, embed=embed)
        rows.append((label, flagged, total))
    flagged, total, _ = rate(profiles["forget01"], [dict(r, question=r["para_q"]) for r in f01], "answer",
                             embed=embed)
    rows.append(("TP forget01: answer, paraphrased question", flagged, total))
    retain = tofu("retain90")
    refs = [{"question": retain[i]["question"], "answer": retain[i]["answer"]}
            for i in random.Random(1).sample(range(len(retain)), 1000)]
    for prof in ("forget01", "forget10"):
        flagged, total, _ = rate(profiles[prof], refs, "answer", embed=embed)
        rows.append((f"FP {prof} profile: TOFU answers of retain90 authors", flagged, total))
        for name in ("retain90", "world_facts", "real_authors"):
            flagged, total, ex = rate(profiles[prof], sets.get(name, []), "output", embed=embed)
            rows.append((f"FP {prof} profile: base answers to {name}", flagged, total))
            fp_examples += [f"[{prof}/{name}] {e}" for e in ex]
    topics = json.loads(TOPICS.read_text(encoding="utf-8"))["topics"]
    tp = tp_n = fp = fp_n = 0
    for t in topics:
        profile = build_leak_profile(make_documents(t["documents"]), subjects=t["subjects"], embed=embed)
        known = lambda r: contains_answer(r["output"], r["answer"])  # noqa: E731
        f, n, _ = rate(profile, sets.get(f"topic:{t['name']}", []), "output", known, embed)
        rows.append((f"TP topic {t['name']}: known base answers", f, n))
        tp, tp_n = tp + f, tp_n + n
        f, n, ex = rate(profile, sets.get(f"neighbour:{t['name']}", []), "output", embed=embed)
        rows.append((f"FP topic {t['name']}: neighbour answers", f, n))
        fp, fp_n = fp + f, fp_n + n
        fp_examples += [f"[{t['name']}/neighbour] {e}" for e in ex]
        for other in topics:  # every other topic's answers are neighbours too
            if other is not t:
                others = sets.get(f"topic:{other['name']}", []) + sets.get(f"neighbour:{other['name']}", [])
                f, n, ex = rate(profile, others, "output", embed=embed)
                fp, fp_n = fp + f, fp_n + n
                fp_examples += [f"[{t['name']}/other topic] {e}" for e in ex]
    rows.append(("TP topics: all known base answers", tp, tp_n))
    rows.append(("FP topics: neighbour + other topics' answers", fp, fp_n))
    print(f"| {'outputs':<52} | flagged   | rate   |")  # noqa: T201
    print(f"|{'-' * 54}|-----------|--------|")  # noqa: T201
    for label, f, n in rows:
        print(_line(label, f, n))  # noqa: T201
    if args.examples:
        for e in fp_examples:
            print(e)  # noqa: T201


if __name__ == "__main__":
    main()
