"""Benchmark ``rwku`` (RWKU, arXiv:2406.10890; GUARD-IT arXiv 2605.12765): run, Markdown, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals import rwku_bench, rwku_efficacy
from steering.config import DEFAULT_THRESHOLD, PAPER, SUBJECT, BuildConfig


def run(ctx: Any) -> dict[str, Any]:
    """Gate variants on every target (the first 10 when quick), then efficacy on a subset."""
    data = rwku_bench.load(ctx.embedder, quick=ctx.quick, root=ctx.data_root)
    variants = rwku_bench.gate_run(ctx.embedder, data)
    default = BuildConfig().gate
    main = variants[default]
    section: dict[str, Any] = {
        "targets": len(data.targets), "default_gate": default, "threshold": DEFAULT_THRESHOLD,
        "max_passages": rwku_bench.MAX_PASSAGES,
        "gate": {"recall": main["recall"],
                 "false_open": {"neighbor": main["false_open"]["neighbor"], "other": main["false_open"]["other"],
                                "neighbor_unnamed": main["false_open"]["neighbor_unnamed"]}},
        "variants": variants,
    }
    guard = ctx.guard()
    try:
        from steering.loading import resolve_model

        model_id = resolve_model(ctx.model_spec).model_id
    except Exception:  # noqa: BLE001 - an unresolvable spec only loses the per-model default alpha
        model_id = str(ctx.model_spec)
    try:
        section["efficacy"] = rwku_efficacy.run(guard, data, model_id=model_id, quick=ctx.quick)
    finally:
        guard.hooks.remove()
    return section


def _f(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def markdown(section: dict[str, Any]) -> list[str]:
    """Tables: per level and variant, per attack type, all-active, efficacy."""
    variants = {k: v for k, v in section["variants"].items() if k != "all_active"}
    lines = ["## rwku", "",
             f"{section['targets']} targets, one forget set per target built from its first "
             f"{section['max_passages']} Wikipedia passages only (the `subject` rows are also given the target's "
             f"name; the others mine it); default gate `{section['default_gate']}`, "
             f"T = {section['threshold']}. Rates are means over targets (pooled over probes in brackets).", "",
             "| gate | mean T | recall L1 | recall L2 | recall L3 | FO neighbour | FO neighbour, not naming target "
             "| FO other targets |", "|---|---|---|---|---|---|---|---|"]
    for name, v in variants.items():
        r, fo, p = v["recall"], v["false_open"], v["pooled"]
        lines.append(f"| {name} | {v['threshold_mean']:.3f} | "
                     + " | ".join(f"{_f(r[f'level{lv}'])} ({_f(p[f'level{lv}'])})" for lv in "123")
                     + f" | {_f(fo['neighbor'])} ({_f(p['neighbor'])}) | {_f(fo['neighbor_unnamed'])} "
                     f"({_f(p['neighbor_unnamed'])}) | {_f(fo['other'])} ({_f(p['other'])}) |")
    rules = ", ".join(f"{k} {n}" for k, n in variants.get(section["default_gate"], {}).get("rules", {}).items())
    if rules:
        lines += ["", f"`{section['default_gate']}` resolved per target to: {rules}."]
    first = next(iter(variants.values()))
    attacks = list(first["attack"])
    lines += ["", "Level-3 recall per attack type (pooled):", "",
              "| attack | n | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants)]
    for a in attacks:
        lines.append(f"| {a} | {first['attack'][a]['n']} | "
                     + " | ".join(_f(v["attack"][a]["recall"]) for v in variants.values()) + " |")
    lines += ["", "Every target active at once:", "",
              "| gate | targets | recall (own set) | forget probe opens another set | neighbour opens any set |",
              "|---|---|---|---|---|"]
    for name, a in section["variants"]["all_active"].items():
        lines.append(f"| {name} | {a['targets']} | {_f(a['recall_own'])} | {_f(a['forget_opens_another'])} | "
                     f"{_f(a['neighbor_any'])} |")
    lines += _misses_markdown(variants.get(section["default_gate"], {}).get("misses"))
    lines += _efficacy_markdown(section.get("efficacy"))
    lines += _recheck_markdown(section.get("efficacy", {}).get("gate_recheck"))
    return [*lines, ""]


def _misses_markdown(missed: dict[str, Any] | None) -> list[str]:
    """Level-3 probes the default gate left closed: how many per attack type and reason, and examples."""
    if not missed:
        return []
    reasons = [r for r in rwku_bench.MISS_REASONS if any(r in row for row in missed.values())]
    lines = ["", "Level-3 probes the default gate leaves closed (prompt alone; the answer policy still "
             "reviews each answer), per attack type and reason:", "",
             "| attack | " + " | ".join(reasons) + " |", "|---|" + "---|" * len(reasons)]
    for attack, row in sorted(missed.items()):
        lines.append(f"| {attack} | " + " | ".join(str(row.get(r, {}).get("n", 0)) for r in reasons) + " |")
    lines += ["", *(f"- `{r}`: {rwku_bench.MISS_REASONS[r]}" for r in reasons), "",
              "Every one of them, with its target, reason and similarity: `report.json`, "
              "`variants.auto.missed_probes`. Examples:", "",
              "| attack | reason | target | similarity | probe |", "|---|---|---|---|---|"]
    for attack, row in sorted(missed.items()):
        for r in reasons:
            for e in row.get(r, {}).get("examples", []):
                query = " ".join(e["query"].split())[:160].replace("|", "/")
                lines.append(f"| {attack} | {r} | {e['target']} | {e['similarity']:.3f} | {query} |")
    return lines


def _efficacy_markdown(eff: dict[str, Any] | None) -> list[str]:
    if not eff:
        return []
    s = eff["summary"]
    any_v = next(iter(s.values()))
    lines = ["", f"Efficacy on probes the base model knows ({len(eff['targets'])} targets, "
             f"{eff['probes_asked']} probes asked, {any_v['known_forget']} known forget and "
             f"{any_v['known_neighbor']} known neighbour probes; greedy, {eff['max_new_tokens']} tokens):", "",
             "| gate | gate open (known forget) | contains-answer after | relative drop | drop L1 / L2 / L3 "
             "| ROUGE-L before -> after | collapsed | neighbour unchanged |", "|---|---|---|---|---|---|---|---|"]
    for name, v in s.items():
        lv = v["relative_drop_level"]
        lines.append(f"| {name} | {_f(v['gate_open_forget'])} | {_f(v['contains_after'])} | {_f(v['relative_drop'])} "
                     f"| {_f(lv['1'])} / {_f(lv['2'])} / {_f(lv['3'])} | {_f(v['rouge_l_before'])} -> "
                     f"{_f(v['rouge_l_after'])} | {_f(v['collapsed_forget'])} | {_f(v['neighbor_unchanged'])} |")
    return lines


def _recheck_markdown(rc: dict[str, Any] | None) -> list[str]:
    if not rc:
        return []
    rows = [*(("recall " + k.replace("level", "L"), v) for k, v in rc["recall"].items()),
            *((f"recall L3 {a}", v) for a, v in rc["attack"].items()),
            ("false opens, neighbour probes", rc["false_open_neighbor"])]
    lines = ["", "Default gate on every asked probe of the efficacy targets (the probes in RWKU's instruction "
             "wrapper), on the prompt alone and with the answer re-check the server applies to non-streamed "
             "requests (open on the prompt, or on the prompt plus the base model's answer):", "",
             "| probes | n | prompt only | with answer re-check |", "|---|---|---|---|"]
    lines += [f"| {name} | {v['n']} | {_f(v['prompt'])} | {_f(v['recheck'])} |" for name, v in rows]
    return lines


def plots(section: dict[str, Any], out: Path) -> list[Path]:
    """Recall per attack type and gate (bars); forget recall vs neighbour false opens per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = {k: v for k, v in section["variants"].items() if k != "all_active"}
    first = next(iter(variants.values()))
    cats = ["level 1", "level 2", *first["attack"]]
    fig, ax = plt.subplots(figsize=(14, 5))
    width = 0.8 / len(variants)
    for j, (name, v) in enumerate(variants.items()):
        vals = [v["pooled"]["level1"], v["pooled"]["level2"], *(v["attack"][a]["recall"] for a in first["attack"])]
        ax.bar(np.arange(len(cats)) + j * width, [x or 0.0 for x in vals], width, label=name)
    ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, rotation=30, ha="right")
    ax.set_ylabel("gate recall")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"RWKU gate recall per level and level-3 attack type ({section['targets']} targets)")
    ax.legend(ncol=len(variants), fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    bars = out / "rwku_recall_by_attack.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in (PAPER, section["default_gate"], SUBJECT):
        if name in variants:
            pts = variants[name]["per_target"]
            ax.scatter([p["neighbor"] for p in pts], [p["forget"] for p in pts], s=12, alpha=0.6, label=name)
    ax.set_xlabel("false opens on the target's neighbour probes")
    ax.set_ylabel("gate recall on the target's forget probes")
    ax.set_title("RWKU, one point per target")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    scatter = out / "rwku_forget_vs_neighbor.png"
    fig.savefig(scatter, dpi=110)
    plt.close(fig)
    return [bars, scatter]
