"""``guardit eval``: run benchmarks by name and write ``report.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from steering.errors import ConfigError
from steering.eval import gate_bench

logger = logging.getLogger(__name__)

#: Benchmarks runnable by name; each takes (embedder, quick) and returns its report section.
BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "tofu-gate": lambda embedder, quick: gate_bench.run(embedder, quick=quick),
}


def run(names: Sequence[str] | None, *, embedder: Any, model_id: str, quick: bool, out: Path) -> dict[str, Any]:
    """Run the named benchmarks (all by default) and write the report files into ``out``."""
    chosen = list(names) if names else list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"expected benchmarks from {sorted(BENCHMARKS)}, found {unknown}", field="benchmark")
    report: dict[str, Any] = {"model": model_id, "quick": quick, "benchmarks": {}}
    for name in chosen:
        logger.info("running benchmark %s", name)
        report["benchmarks"][name] = BENCHMARKS[name](embedder, quick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    if "tofu-gate" in report["benchmarks"]:
        plot_gate_roc(report["benchmarks"]["tofu-gate"], out / "tofu_gate_roc.png")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (numbers only)."""
    lines = [f"# guardit evaluation: {report['model']}{' (quick)' if report.get('quick') else ''}", ""]
    gate = report["benchmarks"].get("tofu-gate")
    if gate:
        lines += ["## tofu-gate", "",
                  "| split | gate | T | recall | paraphrased | retain90 | holdout10 | real_authors | world_facts |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for split, section in gate.items():
            for name, v in section["variants"].items():
                if name.endswith("/roc"):
                    continue
                fo = v["false_open"]
                lines.append(f"| {split} | {name} | {v['threshold']:.2f} | {v['recall_forget']:.4f} | "
                             f"{v['recall_paraphrased']:.4f} | {fo['retain90']:.4f} | {fo['holdout10']:.4f} | "
                             f"{fo['real_authors']:.4f} | {fo['world_facts']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def plot_gate_roc(section: dict[str, Any], path: Path) -> None:
    """Gate ROC per split and rule: paraphrase recall against retain90 false opens, sweeping T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(section), figsize=(5 * len(section), 4), squeeze=False)
    for ax, (split, data) in zip(axes[0], section.items(), strict=True):
        for name, points in data["variants"].items():
            if not name.endswith("/roc"):
                continue
            xs = [p["false_open_retain90"] for p in points]
            ys = [p["recall_paraphrased"] for p in points]
            ax.plot(xs, ys, marker=".", label=name.split("/")[0])
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("false-open rate, retain90")
        ax.set_ylabel("recall, paraphrased questions")
        ax.set_title(f"TOFU {split}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
