"""Benchmark ``muse-knowmem``: MUSE (Shi et al. 2024, arXiv:2407.06460) knowledge memorisation on
News (BBC) and Books (Harry Potter), GUARD-IT (arXiv 2605.12765) against the baselines.

A forget set is built from a corpus' ``forget_qa`` pairs (the MUSE forget corpora themselves are not
in ``data/``). Every method answers ``forget_qa`` (should fall) and ``retain_qa`` (should hold)
zero-shot in the chat template; the score is ROUGE-L recall against the reference answer. The base
model is scored first, because a 135M model knows little of either corpus: the forget score can
only fall as far as it started, so the items the base model got right are also reported alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.data import data_dir, read_jsonl
from evals.methods import METHODS, Method, build_guardit, make_methods
from evals.metrics import contains_answer, is_collapsed, rouge_l_recall
from steering.entities import mine_entities
from steering.forget_set import QAPair, make_documents
from steering.loading import resolve_model

logger = logging.getLogger(__name__)

CORPORA = ("news", "books")
MAX_NEW_TOKENS = 32
#: An answer counts as known when its ROUGE-L recall reaches this (MUSE answers are short spans).
KNOWN_ROUGE = 0.5
#: ``--quick``: Books only, the first rows of each split.
QUICK_CORPORA = ("books",)
QUICK_ROWS = 16
REFUSAL_ENTITIES = 15


def load_split(corpus: str, split: str, root: Path | None = None) -> list[dict[str, str]]:
    """``data/muse/<corpus>/knowmem/<split>.jsonl`` (``forget_qa``, ``retain_qa``, ...)."""
    if corpus not in CORPORA:
        raise ValueError(f"expected a MUSE corpus from {CORPORA}, found {corpus!r}")
    return read_jsonl(data_dir(root) / "muse" / corpus / "knowmem" / f"{split}.jsonl")


def refusal_topics(rows: Sequence[dict[str, str]]) -> list[str]:
    """The names that recur in the forget QA, most frequent first (what a refusal prompt can list)."""
    texts = [f"{r['question']} {r['answer']}" for r in rows]
    names = list(mine_entities(texts, min_count=2))
    if len(names) < 3:
        names = list(mine_entities(texts, min_count=1))
    return [n.title() for n in names[:REFUSAL_ENTITIES]]


def run(ctx: Any) -> dict[str, Any]:
    """The section of ``report.json``: per corpus, per method, forget and retain scores."""
    try:
        model_id = resolve_model(ctx.model_spec).model_id
    except Exception:  # noqa: BLE001 - an unresolvable spec only loses the per-model default alpha
        model_id = str(ctx.model_spec)
    guard = ctx.guard()
    rows = QUICK_ROWS if ctx.quick else None
    section: dict[str, Any] = {"max_new_tokens": MAX_NEW_TOKENS, "known_rouge": KNOWN_ROUGE, "corpora": {}}
    try:
        for corpus in QUICK_CORPORA if ctx.quick else CORPORA:
            t0 = time.perf_counter()
            forget = load_split(corpus, "forget_qa", ctx.data_root)
            retain = load_split(corpus, "retain_qa", ctx.data_root)[:rows]
            docs = make_documents(qa=[QAPair(r["question"], r["answer"]) for r in forget])
            build = build_guardit(guard, docs, model_id=model_id)
            topics = refusal_topics(forget)
            result = _corpus(make_methods(guard, build, refusal_topics=topics), forget[:rows], retain)
            result.update(forget_set_size=len(docs), guardit=build.info(), refusal_topics=topics,
                          seconds=time.perf_counter() - t0)
            section["corpora"][corpus] = result
            logger.info("muse-knowmem %s: %.0f s", corpus, result["seconds"])
    finally:
        guard.hooks.remove()
    section["verdict"] = verdict(section)
    return section


def _corpus(methods: dict[str, Method], forget: list[dict[str, str]],
            retain: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_forget": len(forget), "n_retain": len(retain), "methods": {}}
    base: dict[str, list[str]] = {}
    for name in METHODS:
        method = methods[name]
        row: dict[str, Any] = {}
        for part, items in (("forget", forget), ("retain", retain)):
            outputs = method.generate([r["question"] for r in items], max_new_tokens=MAX_NEW_TOKENS)
            if name == "unsteered":
                base[part] = outputs
            row[part] = _scores(method, items, outputs, base[part])
        out["methods"][name] = row
    return out


def _scores(method: Method, items: Sequence[dict[str, str]], outputs: list[str],
            base: list[str]) -> dict[str, Any]:
    pairs = list(zip(outputs, items, strict=True))
    rouge = [rouge_l_recall(o, r["answer"]) for o, r in pairs]
    known = [i for i, b in enumerate(base) if rouge_l_recall(b, items[i]["answer"]) >= KNOWN_ROUGE]
    n = max(1, len(items))
    return {
        "rouge_l": sum(rouge) / n,
        "contains_answer": sum(contains_answer(o, r["answer"]) for o, r in pairs) / n,
        "known": len(known),
        "rouge_l_known": sum(rouge[i] for i in known) / len(known) if known else None,
        "unchanged": sum(o == b for o, b in zip(outputs, base, strict=True)) / n,
        "collapsed": sum(map(is_collapsed, outputs)) / n,
        "gate_open": sum(method.gate_open([r["question"] for r in items])) / n,
        "examples": [{"question": r["question"], "answer": r["answer"], "output": o} for o, r in pairs[:2]],
    }


def verdict(section: dict[str, Any]) -> list[str]:
    """Plain sentences: how much the base model knew, and what each method did to it."""
    lines: list[str] = []
    for corpus, c in section["corpora"].items():
        base = c["methods"]["unsteered"]
        lines.append(f"{corpus}: the base model's ROUGE-L is {base['forget']['rouge_l']:.3f} on forget QA "
                     f"and {base['retain']['rouge_l']:.3f} on retain QA; it knew {base['forget']['known']} of "
                     f"{c['n_forget']} forget answers (ROUGE-L >= {section['known_rouge']}).")
        for name, m in c["methods"].items():
            if name == "unsteered":
                continue
            f, r = m["forget"], m["retain"]
            known = f", {f['rouge_l_known']:.3f} on the known ones" if f["rouge_l_known"] is not None else ""
            lines.append(f"{corpus} {name}: forget ROUGE-L {f['rouge_l']:.3f}{known}; retain ROUGE-L "
                         f"{r['rouge_l']:.3f} (base {base['retain']['rouge_l']:.3f}); gate open "
                         f"{f['gate_open']:.0%} forget / {r['gate_open']:.0%} retain; collapsed "
                         f"{f['collapsed']:.0%} / {r['collapsed']:.0%}.")
    return lines


def markdown(section: dict[str, Any]) -> list[str]:
    """Report lines: one table row per corpus and method."""
    lines = ["## muse-knowmem (MUSE knowledge memorisation, zero-shot chat)", "",
             f"Greedy answers of up to {section['max_new_tokens']} tokens; ROUGE-L recall against the "
             f"reference; 'known' = forget items the base model answered with ROUGE-L >= "
             f"{section['known_rouge']}.", "",
             "| corpus | method | forget ROUGE-L | forget ROUGE-L (known) | retain ROUGE-L | "
             "retain unchanged | gate open (forget / retain) | collapsed (forget / retain) |",
             "|---|---|---|---|---|---|---|---|"]
    for corpus, c in section["corpora"].items():
        for name, m in c["methods"].items():
            f, r = m["forget"], m["retain"]
            known = f"{f['rouge_l_known']:.3f} (n={f['known']})" if f["rouge_l_known"] is not None else "-"
            lines.append(f"| {corpus} | {name} | {f['rouge_l']:.3f} | {known} | {r['rouge_l']:.3f} | "
                         f"{r['unchanged']:.2f} | {f['gate_open']:.2f} / {r['gate_open']:.2f} | "
                         f"{f['collapsed']:.2f} / {r['collapsed']:.2f} |")
    for corpus, c in section["corpora"].items():
        g = c["guardit"]
        cal = g.get("calibration", {})
        lines.append(f"\n{corpus}: GUARD-IT forget set of all {c['forget_set_size']} forget QA pairs, "
                     f"k = {g['k']}, layer {g['layer']}, alpha {g['alpha']} (calibrated on known answers: "
                     f"{cal.get('measured')}; strengths tried (alpha, forgotten, collapsed): "
                     f"{cal.get('tried')}).")
    return [*lines, "", *[f"- {v}" for v in section["verdict"]], ""]


def plots(section: dict[str, Any], out: Path) -> list[Path]:
    """Bars per corpus: forget and retain ROUGE-L for each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(section["corpora"].items())
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.5 * len(corpora), 3.8), squeeze=False)
    for ax, (corpus, c) in zip(axes[0], corpora, strict=True):
        names = list(c["methods"])
        xs = range(len(names))
        for shift, part in ((-0.2, "forget"), (0.2, "retain")):
            ax.bar([x + shift for x in xs], [c["methods"][n][part]["rouge_l"] for n in names], 0.4,
                   label=f"{part} QA")
        ax.set_xticks(list(xs), names, rotation=15, fontsize=8)
        ax.set_ylabel("ROUGE-L recall")
        ax.set_title(f"MUSE {corpus} knowmem")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "muse_knowmem.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
