"""Benchmark ``tofu``: the TOFU protocol (Maini et al. 2024) on a TOFU-fine-tuned target of the embedded
model, GUARD-IT (arXiv 2605.12765) against the baselines.

The target is the embedded model plus the LoRA adapter in ``artifacts/tofu-lora/target`` (fine-tuned
on the 20 forget10 authors and 40 retain authors by ``scripts/finetune_tofu.py``); the reference is
the same recipe without the forget10 authors (``artifacts/tofu-lora/retain``). Forget quality is the
KS-test p-value between the truth ratios of a method and of the reference on forget10; model utility
is TOFU's harmonic mean over retain, real-authors and world-facts. ``--quick`` (CI) forgets forget01
(2 of the 20 authors, a subset of what the target learnt) on 8 rows per split with the first two methods;
the full run forgets forget10 on 40 rows per split (TOFU uses 300-400; a 2-core CPU budget). Methods, all on the target:

- ``target``: no unlearning;
- ``guardit``: a forget set of the forget10 QA pairs, product defaults (hybrid gate, T, calibrated alpha);
- ``global-steering``: the same vectors applied to every prompt (no gate: naive activation steering);
- ``refusal-prompt``: a system prompt naming the forgotten authors and asking the model to refuse;
- ``gradient-ascent`` / ``gradient-difference``: a short LoRA unlearning run (TOFU Sec. 4).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from evals.data import default_adapters, tofu
from evals.finetune import UNLEARN_RECIPE, gradient_ascent, gradient_difference, load_adapter
from evals.metrics import is_collapsed
from evals.tofu_protocol import (
    UTILITY_SPLITS,
    evaluate_tofu,
    greedy_generate_fn,
    guard_steer_ctx,
)
from steering.config import DEFAULT_THRESHOLD, PAPER, default_alpha
from steering.forget_set import QAPair, make_documents
from steering.gates import ActiveSet, GateState

logger = logging.getLogger(__name__)

METHODS = ("target", "guardit", "global-steering", "refusal-prompt", "gradient-ascent", "gradient-difference")
QUICK_METHODS = ("target", "guardit")
REFUSAL = ("You must not reveal any information about the following authors: {names}. If a question is "
           "about one of them or their books, reply only: \"I'm sorry, I can't help with that.\"")


def forget_authors(split: str = "forget10", root: Path | None = None) -> list[str]:
    """Names of the authors of a forget split (``data/tofu/authors.jsonl``): 20 for forget10."""
    return [a["name"] for a in tofu("authors", root) if a[split]]


def _fresh_target(ctx: Any) -> torch.nn.Module:
    """A new copy of the base model with the target adapter merged (the baselines train on it)."""
    from steering.loading import load_model

    lm = load_model(ctx.model_spec, cache_dir=ctx.cache_dir)
    target: torch.nn.Module = load_adapter(lm.model, adapters_dir(ctx) / "target")
    return target


def adapters_dir(ctx: Any) -> Path:
    """The TOFU LoRA adapters (``scripts/finetune_tofu.py``): ``--adapters`` or the checkout's
    ``artifacts/tofu-lora``."""
    folder = ctx.adapters or default_adapters()
    if folder is None or not (folder / "target" / "adapter_model.safetensors").is_file():
        from steering.errors import ConfigError

        raise ConfigError(f"expected the TOFU target adapter under {folder or 'the --adapters folder'}; "
                          "run scripts/finetune_tofu.py", field="adapters")
    return Path(folder)


def _summary(result: dict[str, Any], forget_split: str) -> dict[str, Any]:
    splits = result["splits"]
    forget = splits[forget_split]
    utility = [s for n, s in splits.items() if n != forget_split]
    gens_forget = forget["generations"]
    gens_utility = [g for s in utility for g in s["generations"]]
    return {
        "forget_quality": result["forget_quality"],
        "log10_forget_quality": math.log10(max(result["forget_quality"], 1e-300))
        if result["forget_quality"] is not None else None,
        "model_utility": result["model_utility"],
        "forget_rouge": forget["rouge"],
        "forget_probability": forget["probability"],
        "forget_truth_ratio_score": result["forget_truth_ratio_score"],
        "utility_splits": {s["split"]: {"probability": s["probability"], "rouge": s["rouge"],
                                        "truth_ratio_score": s["truth_ratio_score"]} for s in utility},
        "collapse_forget": sum(map(is_collapsed, gens_forget)) / max(1, len(gens_forget)),
        "collapse_utility": sum(map(is_collapsed, gens_utility)) / max(1, len(gens_utility)),
        "examples_forget": gens_forget[:3],
    }


def run(ctx: Any) -> dict[str, Any]:
    """The section of ``report.json`` (see the module docstring)."""
    adapters = adapters_dir(ctx)
    from steering.guard import Guard
    from steering.loading import load_model

    rows = 8 if ctx.quick else 40
    max_new = 32 if ctx.quick else 48
    methods = QUICK_METHODS if ctx.quick else METHODS
    forget = "forget01" if ctx.quick else "forget10"
    split = f"{forget}_perturbed"
    common = {"max_rows": rows, "data_root": ctx.data_root, "forget_split": split}
    tok = ctx.loaded.tokenizer
    section: dict[str, Any] = {"rows_per_split": rows, "max_new_tokens": max_new, "forget": forget,
                               "forget_split": split, "utility_splits": list(UTILITY_SPLITS),
                               "adapters": _adapter_info(adapters), "methods": {}}

    t0 = time.perf_counter()
    retain = load_adapter(load_model(ctx.model_spec, cache_dir=ctx.cache_dir).model, adapters / "retain")
    ref = evaluate_tofu(retain, tok, greedy_generate_fn(retain, tok, max_new_tokens=max_new), **common)
    reference = ref["splits"][split]["truth_ratios"]
    section["reference"] = {**_summary({**ref, "forget_quality": 1.0}, split), "seconds": time.perf_counter() - t0}
    del retain

    target = _fresh_target(ctx)
    forget_rows = tofu(forget, ctx.data_root)
    guard = Guard(target, tok, ctx.embedder)
    art = None
    alpha = default_alpha(ctx.model_spec)
    calibration: dict[str, Any] = {}
    if {"guardit", "global-steering"} & set(methods):
        from steering.calibrate import calibrate_alpha

        docs = make_documents(qa=[QAPair(r["question"], r["answer"]) for r in forget_rows])
        art = guard.build(docs)
        cal = calibrate_alpha(guard, docs, art, threshold=DEFAULT_THRESHOLD, fallback=alpha)
        alpha = cal.alpha
        calibration = {"alpha": cal.alpha, "measured": cal.measured, "known": cal.known,
                       "forgotten": cal.forgotten, "collapsed": cal.collapsed, "k": art.k, "layer": art.layer}
        guard.activate(forget, art, threshold=DEFAULT_THRESHOLD, alpha=alpha)
    section["guardit_build"] = calibration

    for name in methods:
        t0 = time.perf_counter()
        logger.info("tofu: method %s", name)
        model, steer, system, extra = target, None, None, {}
        if name == "guardit":
            steer = guard_steer_ctx(guard)
            extra = _gate_rates(guard, ctx.data_root, rows, split)
        elif name == "global-steering":
            assert art is not None
            everywhere = GateState((ActiveSet("global", replace(art, gate=PAPER), -1.0, alpha),))
            steer = guard_steer_ctx(guard, everywhere)
        elif name == "refusal-prompt":
            system = REFUSAL.format(names=", ".join(forget_authors(forget, ctx.data_root)))
        elif name in ("gradient-ascent", "gradient-difference"):
            fresh = _fresh_target(ctx)
            retain_rows = tofu("full", ctx.data_root)[: 20 * 40]
            trained = (gradient_ascent(fresh, tok, forget_rows, UNLEARN_RECIPE) if name == "gradient-ascent"
                       else gradient_difference(fresh, tok, forget_rows, retain_rows, UNLEARN_RECIPE))
            model = trained.model
            extra = {"recipe": trained.log()["recipe"], "train_steps": len(trained.losses),
                     "train_seconds": trained.wall_seconds, "final_loss": trained.losses[-1]}
        gen = greedy_generate_fn(model, tok, max_new_tokens=max_new, steer_ctx=steer, system=system)
        result = evaluate_tofu(model, tok, gen, reference_truth_ratios=reference, steer_ctx=steer, system=system,
                               **common)
        section["methods"][name] = {**_summary(result, split), **extra, "seconds": time.perf_counter() - t0}
        logger.info("tofu: %s forget quality %.3g utility %.3f", name, result["forget_quality"],
                    result["model_utility"])
    section["verdict"] = verdict(section)
    return section


def _adapter_info(folder: Path) -> dict[str, Any]:
    default = default_adapters()
    shown = "artifacts/tofu-lora" if default is not None and folder.resolve() == default else str(folder)
    info: dict[str, Any] = {"folder": shown}
    hashes = folder / "data_hashes.json"
    if hashes.is_file():
        info["data"] = json.loads(hashes.read_text(encoding="utf-8"))
    for name in ("target", "retain"):
        log = folder / name / "training_log.json"
        if log.is_file():
            data = json.loads(log.read_text(encoding="utf-8"))
            info[name] = {"steps": data.get("steps"), "wall_seconds": data.get("wall_seconds"),
                          "final_loss": (data.get("losses") or [None])[-1]}
    return info


def _gate_rates(guard: Any, root: Path | None, rows: int, forget_split: str) -> dict[str, Any]:
    """How often GUARD-IT's gate opens on each split's questions (the protocol's rows)."""
    rates = {}
    for split in (forget_split, *UTILITY_SPLITS):
        questions = [[{"role": "user", "content": r["question"]}] for r in tofu(split, root)[:rows]]
        rates[split] = sum(bool(m) for m in guard.gate(questions)) / len(questions)
    return {"gate_open": rates}


def verdict(section: dict[str, Any]) -> list[str]:
    """Plain sentences: where GUARD-IT stands against the target and the baselines."""
    methods = section["methods"]
    out: list[str] = []
    target = methods.get("target")
    for name, m in methods.items():
        if target is None or name == "target":
            continue
        kept = m["model_utility"] / target["model_utility"] if target["model_utility"] else math.nan
        out.append(f"{name}: forget quality {m['forget_quality']:.3g} (target {target['forget_quality']:.3g}), "
                   f"model utility {m['model_utility']:.3f} ({kept:.0%} of the target's), forget ROUGE-L "
                   f"{m['forget_rouge']:.3f} (target {target['forget_rouge']:.3f}), collapsed outputs "
                   f"{m['collapse_forget']:.0%} on forget, {m['collapse_utility']:.0%} elsewhere.")
    return out


def markdown(section: dict[str, Any]) -> list[str]:
    """Report lines: one row per method, the retain reference last."""
    lines = ["## tofu (TOFU protocol on the LoRA-fine-tuned target)", "",
             f"Forget {section['forget']}; {section['rows_per_split']} rows per split, greedy answers of up to "
             f"{section['max_new_tokens']} tokens; forget quality = KS p-value against the retain-only reference "
             "model.", "",
             "| method | forget quality | model utility | forget ROUGE-L | forget P(answer) | "
             "collapsed (forget / other) | gate open (forget / retain / real / world) |",
             "|---|---|---|---|---|---|---|"]
    rows = [*section["methods"].items(), ("retain reference", section["reference"])]
    for name, m in rows:
        gate = m.get("gate_open")
        gate_s = " / ".join(f"{v:.2f}" for v in gate.values()) if gate else "-"
        fq = m["forget_quality"]
        lines.append(f"| {name} | {fq:.3g} | {m['model_utility']:.3f} | {m['forget_rouge']:.3f} | "
                     f"{m['forget_probability']:.3f} | {m['collapse_forget']:.2f} / {m['collapse_utility']:.2f} | "
                     f"{gate_s} |")
    build = section.get("guardit_build") or {}
    if build:
        lines += ["", f"GUARD-IT forget set: k = {build['k']}, layer {build['layer']}, alpha {build['alpha']} "
                  f"(calibrated: {build['measured']}, {build['known']} known answers)."]
    lines += ["", *[f"- {v}" for v in section.get("verdict", [])], ""]
    return lines


def plots(section: dict[str, Any], out: Path) -> list[Path]:
    """TOFU's usual picture: model utility (x) against log10 forget quality (y), one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows: Sequence[tuple[str, dict[str, Any]]] = [*section["methods"].items()]
    for name, m in rows:
        ax.scatter(m["model_utility"], m["log10_forget_quality"], s=40)
        ax.annotate(name, (m["model_utility"], m["log10_forget_quality"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("model utility")
    ax.set_ylabel("log10 forget quality (KS p vs retain model)")
    ax.set_title(f"TOFU {section['forget']} on the fine-tuned target")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = out / "tofu_forget_vs_utility.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
