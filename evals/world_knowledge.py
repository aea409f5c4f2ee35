"""Benchmarks ``world-knowledge`` and ``world-knowledge-int8``: forget real knowledge the embedded
model has, one topic at a time, with GUARD-IT (arXiv 2605.12765) and the baselines of ``methods``.

Items are TOFU ``world_facts`` and ``real_authors`` questions. Topics are k-means groups (fixed seed)
of every candidate item's question + answer, so they depend on the data only and are the same for the
float and the int8 model. The items the base model answers correctly (greedy answer contains the
reference) are the known ones; for each topic with at least ``MIN_KNOWN`` known items, the topic's
known items are forgotten and measured, and the other topics' known items measure utility. Neutral
everyday prompts measure how far each method moves next-token distributions (KL to the base model).
Report lines and plots are in ``world_knowledge_report``.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from evals.data import tofu
from evals.knowledge import KnowledgeItem, select_known, topic_groups
from evals.methods import METHODS, Method, build_guardit, make_methods
from evals.metrics import contains_answer, is_collapsed, mean_kl, relative_drop, rouge_l_recall
from evals.tofu_protocol import answer_probability
from steering.config import BuildConfig
from steering.forget_set import QAPair, make_documents
from steering.guard import Guard
from steering.loading import resolve_model

logger = logging.getLogger(__name__)

SOURCES = ("world_facts", "real_authors")
N_TOPICS = 8
MIN_KNOWN = 3
MAX_NEW_TOKENS = 24
#: ``--quick``: the largest topic, and this many items sampled from the other topics (fixed seed).
QUICK_OTHERS = 24
#: ``--quick`` leaves out the refusal prompt: listing the forgotten questions makes every prompt
#: hundreds of tokens long, which is most of the CPU time of a run.
QUICK_METHODS = ("unsteered", "guardit", "global-steering")
INT8_METHODS = ("unsteered", "guardit")
#: Everyday requests far from any world fact: next-token KL to the base model is measured on them.
NEUTRAL_PROMPTS = (
    "How do I boil an egg?",
    "Give me three tips for a good night's sleep.",
    "How can I keep my houseplants healthy?",
    "What should I pack for a weekend trip?",
    "Explain how to make a cup of tea.",
    "Suggest a name for a friendly dog.",
    "How do I tie my shoelaces?",
    "Write a polite message to reschedule a meeting.",
    "How can I stay focused while studying?",
    "What are some fun things to do on a rainy day?",
    "How often should I water a cactus?",
    "Write one sentence about autumn leaves.",
)


def candidates(root: Path | None = None) -> list[KnowledgeItem]:
    """Every world-facts and real-authors question with its short reference answer."""
    return [KnowledgeItem(src, i, r["question"], r["answer"])
            for src in SOURCES for i, r in enumerate(tofu(src, root))]


def plan(embedder: Any, items: Sequence[KnowledgeItem], *, quick: bool,
         seed: int = 0) -> tuple[list[KnowledgeItem], list[int]]:
    """Topic labels for every candidate, and the items the run will ask the base model.

    Returns:
        (items to evaluate with their topics, topics to forget). Quick: the largest topic plus
        ``QUICK_OTHERS`` items of the other topics; full: every item and every topic.
    """
    grouped = topic_groups(embedder, items, k=N_TOPICS, seed=seed)
    sizes = {t: sum(i.topic == t for i in grouped) for t in sorted({i.topic for i in grouped})}
    if not quick:
        return grouped, list(sizes)
    topic = max(sizes, key=lambda t: (sizes[t], -t))
    rest = [i for i in grouped if i.topic != topic]
    picked = random.Random(seed).sample(rest, min(QUICK_OTHERS, len(rest)))
    keep = {(i.source, i.index) for i in picked}
    return [i for i in grouped if i.topic == topic or (i.source, i.index) in keep], [topic]


def run(ctx: Any) -> dict[str, Any]:
    """``world-knowledge``: every method on the float model."""
    guard = ctx.guard()
    try:
        return evaluate(guard, ctx.embedder, model_id=_model_id(ctx), quick=ctx.quick, root=ctx.data_root,
                        names=QUICK_METHODS if ctx.quick else METHODS)
    finally:
        guard.hooks.remove()


def run_int8(ctx: Any) -> dict[str, Any]:
    """``world-knowledge-int8``: GUARD-IT and the base model, both dynamically quantized to int8."""
    model = quantize_int8(ctx.loaded.model)
    guard = Guard(model, ctx.loaded.tokenizer, ctx.embedder)
    # One row per batch: dynamic quantization shares an activation scale across the batch, so batch
    # mates change each other's answers (a request served alone is what is measured).
    section = evaluate(guard, ctx.embedder, model_id=_model_id(ctx), quick=ctx.quick, root=ctx.data_root,
                       names=INT8_METHODS, batch_size=1)
    section["quantization"] = _quantization_facts(model, guard, section)
    return section


def _quantization_facts(model: torch.nn.Module, guard: Guard, section: dict[str, Any]) -> dict[str, Any]:
    layers = sorted({t["guardit"]["layer"] for t in section["topics"].values()})
    calls = {layer: guard.hooks.calls(layer) for layer in layers}
    guard.hooks.remove()
    return {"scheme": "torch.ao.quantization.quantize_dynamic, nn.Linear -> qint8, CPU",
            "quantized_linear": sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__
                                for m in model.modules()),
            # The residual hooks sit on decoder blocks, which quantization leaves in place: they must fire.
            "hook_calls": {str(k): {"forward": c, "steered": s} for k, (c, s) in calls.items()}}


def _model_id(ctx: Any) -> str:
    try:
        return resolve_model(ctx.model_spec).model_id
    except Exception:  # noqa: BLE001 - an unresolvable spec only loses the per-model default alpha
        return str(ctx.model_spec)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of ``model`` with every ``nn.Linear`` dynamically quantized to int8 (``torch.ao``)."""
    from torch.ao.quantization import quantize_dynamic

    float_copy = _cpu_float_copy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices; the API still works
        quantized: torch.nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            float_copy, {torch.nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


def _cpu_float_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def evaluate(guard: Guard, embedder: Any, *, model_id: str, quick: bool, root: Path | None = None,
             names: Sequence[str] = METHODS, batch_size: int = 16) -> dict[str, Any]:
    """The benchmark on ``guard.model``: per topic and method, then totals per method.

    Args:
        guard: the guarded model (no forget set active).
        embedder: the gate's sentence-transformer (also groups the items into topics).
        model_id: the model's id (default strength).
        quick: CI-sized subset (see ``plan``).
        root: benchmark data folder.
        names: methods to compare (``methods.METHODS``).
        batch_size: rows per forward batch everywhere, including the build and calibration.
    """
    started = time.perf_counter()
    items, topics = plan(embedder, candidates(root), quick=quick)
    selected = select_known(guard, items, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size)
    known = [i for i in selected if i.known]
    neutral = _neutral_answers(guard, batch_size)
    section: dict[str, Any] = {
        "candidates": len(items), "known": len(known), "max_new_tokens": MAX_NEW_TOKENS,
        "methods": list(names), "batch_size": batch_size, "topics": {}, "skipped_topics": {}}
    for topic in topics:
        forget = [i for i in known if i.topic == topic]
        other = [i for i in known if i.topic != topic]
        if len(forget) < MIN_KNOWN:
            section["skipped_topics"][str(topic)] = len(forget)
            continue
        t0 = time.perf_counter()
        result = _topic(guard, forget, other, neutral, model_id=model_id, names=names, batch_size=batch_size)
        result["seconds"] = time.perf_counter() - t0
        section["topics"][str(topic)] = result
        logger.info("world-knowledge topic %s: %d forgotten items, %.0f s", topic, len(forget),
                    result["seconds"])
    section["totals"] = totals(section["topics"], names)
    section["verdict"] = verdict(section)
    section["seconds"] = time.perf_counter() - started
    return section


def _neutral_answers(guard: Guard, batch_size: int) -> list[tuple[str, str]]:
    """The base model's greedy answers to the neutral prompts (teacher-forced for KL)."""
    base = Method("unsteered", guard, batch_size=batch_size).generate(list(NEUTRAL_PROMPTS),
                                                                      max_new_tokens=MAX_NEW_TOKENS)
    return [(q, a) for q, a in zip(NEUTRAL_PROMPTS, base, strict=True) if a.strip()]


def _topic(guard: Guard, forget: list[KnowledgeItem], other: list[KnowledgeItem],
           neutral: list[tuple[str, str]], *, model_id: str, names: Sequence[str],
           batch_size: int) -> dict[str, Any]:
    docs = make_documents(qa=[QAPair(i.question, i.answer) for i in forget])
    build = build_guardit(guard, docs, model_id=model_id, config=BuildConfig(batch_size=min(8, batch_size)),
                          batch_size=batch_size)
    methods = make_methods(guard, build, refusal_topics=[i.question for i in forget], names=names,
                           batch_size=batch_size)
    base = methods["unsteered"]
    base_lp = {part: _probabilities(base, items) for part, items in (("forget", forget), ("other", other))}
    base_neutral = base.next_token_logprobs(neutral)
    out: dict[str, Any] = {"n_forget": len(forget), "n_other": len(other),
                           "questions": [i.question for i in forget], "guardit": build.info(), "methods": {}}
    for name, method in methods.items():
        row: dict[str, Any] = {}
        for part, items in (("forget", forget), ("other", other)):
            outputs = ([i.base_output for i in items] if name == "unsteered"
                       else method.generate([i.question for i in items], max_new_tokens=MAX_NEW_TOKENS))
            probs = base_lp[part] if name == "unsteered" else _probabilities(method, items)
            row[part] = _scores(method, items, outputs, probs, base_lp[part])
        kl = 0.0 if name == "unsteered" else mean_kl(base_neutral, method.next_token_logprobs(neutral))
        row["neutral"] = {"n": len(neutral), "kl": kl,
                          "gate_open": _rate(method.gate_open([q for q, _ in neutral]))}
        out["methods"][name] = row
    return out


def _probabilities(method: Method, items: Sequence[KnowledgeItem]) -> list[float]:
    pairs = [(i.question, i.answer) for i in items]
    return [answer_probability(s, n) for s, n in method.answer_logprobs(pairs)] if pairs else []


def _scores(method: Method, items: Sequence[KnowledgeItem], outputs: list[str], probs: list[float],
            base_probs: list[float]) -> dict[str, Any]:
    n = len(items)
    hits = [contains_answer(o, i.answer) for o, i in zip(outputs, items, strict=True)]
    return {
        "n": n,
        "contains_answer": _rate(hits),
        "unchanged": _rate([o == i.base_output for o, i in zip(outputs, items, strict=True)]),
        "rouge_l": sum(rouge_l_recall(o, i.answer) for o, i in zip(outputs, items, strict=True)) / max(1, n),
        "answer_probability": sum(probs) / max(1, n),
        "answer_probability_base": sum(base_probs) / max(1, n),
        "collapsed": _rate([is_collapsed(o) for o in outputs]),
        "gate_open": _rate(method.gate_open([i.question for i in items])),
        "examples": [{"question": i.question, "base": i.base_output, "output": o}
                     for i, o in list(zip(items, outputs, strict=True))[:2]],
    }


def _rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


_AVERAGED = ("contains_answer", "unchanged", "rouge_l", "answer_probability", "answer_probability_base",
             "collapsed", "gate_open")


def totals(topics: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Per method, item-weighted over topics (KL: mean over topics)."""
    out: dict[str, Any] = {}
    for name in names:
        rows = [t["methods"][name] for t in topics.values()]
        if not rows:
            continue
        agg: dict[str, Any] = {}
        for part in ("forget", "other"):
            n = sum(r[part]["n"] for r in rows)
            agg[part] = {"n": n, **{key: sum(r[part][key] * r[part]["n"] for r in rows) / max(1, n)
                                    for key in _AVERAGED}}
        base_forget = sum(t["methods"]["unsteered"]["forget"]["contains_answer"] * t["n_forget"]
                          for t in topics.values()) / max(1, sum(t["n_forget"] for t in topics.values()))
        agg["forget"]["contains_answer_relative_drop"] = relative_drop(base_forget,
                                                                       agg["forget"]["contains_answer"])
        agg["forget"]["answer_probability_relative_drop"] = relative_drop(
            agg["forget"]["answer_probability_base"], agg["forget"]["answer_probability"])
        agg["neutral_kl"] = sum(r["neutral"]["kl"] for r in rows) / len(rows)
        agg["neutral_gate_open"] = sum(r["neutral"]["gate_open"] for r in rows) / len(rows)
        out[name] = agg
    return out


def verdict(section: dict[str, Any]) -> list[str]:
    """Plain sentences on the issue's targets, true or not."""
    tot = section["totals"]
    g = tot.get("guardit")
    if not g:
        return ["no topic had enough known items to measure"]
    met = "met" if _targets_met(g) else "NOT met"
    lines = [f"GUARD-IT removed {g['forget']['contains_answer_relative_drop']:.0%} of the forgotten answers "
             f"(target >= 80%) and left {g['other']['unchanged']:.0%} of the other known answers unchanged "
             f"(target >= 95%): {met}."]
    collapsed = {t: v for t, v in section["topics"].items()
                 if v["methods"]["guardit"]["forget"]["collapsed"] > 0}
    if collapsed:
        lines.append("GUARD-IT outputs collapsed on forgotten items in topics " + ", ".join(
            f"{t} ({v['methods']['guardit']['forget']['collapsed']:.0%} at alpha {v['guardit']['alpha']})"
            for t, v in collapsed.items()) + ".")
    for name, m in tot.items():
        if name != "unsteered":
            f, o = m["forget"], m["other"]
            lines.append(f"{name}: forgotten-answer drop {f['contains_answer_relative_drop']:.0%}, "
                         f"other answers unchanged {o['unchanged']:.0%} and still correct "
                         f"{o['contains_answer']:.0%}, collapsed outputs {f['collapsed']:.0%} on forgotten / "
                         f"{o['collapsed']:.0%} on other items, neutral KL {m['neutral_kl']:.3f}.")
    clean = [n for n, m in tot.items() if n != "unsteered" and _clean(m, tot["unsteered"])]
    lines.append("methods without collapse (no collapsed output beyond the base model's) and without "
                 "utility loss (>= 95% of the other known answers still correct): "
                 + (", ".join(clean) or "none") + ".")
    return lines


def _clean(m: dict[str, Any], base: dict[str, Any]) -> bool:
    return bool(m["forget"]["collapsed"] <= base["forget"]["collapsed"] and m["other"]["collapsed"]
                <= base["other"]["collapsed"] and m["other"]["contains_answer"] >= 0.95)


def _targets_met(m: dict[str, Any]) -> bool:
    return bool(m["forget"]["contains_answer_relative_drop"] >= 0.8 and m["other"]["unchanged"] >= 0.95)
