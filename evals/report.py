"""``guardit eval``: run benchmarks by name and write ``report.json``, ``report.md`` and PNG plots.

Each benchmark is a :class:`Benchmark`: ``run(ctx)`` returns its JSON section, ``markdown(section)``
its lines of the report, ``plots(section, out)`` writes its PNG files. They share one
:class:`EvalContext`, which loads the embedder at once and the LLM only when a benchmark asks for it
(``tofu-gate`` never does: the gate does not look at the LLM).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import (
    attacks_bench,
    gate_bench,
    leak_bench,
    muse_bench,
    rwku_report,
    tofu_bench,
    world_knowledge,
    world_knowledge_report,
)
from steering.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class EvalContext:
    """What benchmarks share: the embedder, the (lazily loaded) LLM and the run options.

    Args:
        embedder: the gate's sentence-transformer.
        model_spec: ``GUARDIT_MODEL`` value (embedded alias, GGUF path or HF folder).
        cache_dir: where converted models live.
        quick: CI-sized subsets.
        out: the report folder (benchmarks may write extra files there).
        data_root: benchmark data folder (default: the checkout's ``data/``).
        adapters: the TOFU LoRA adapters folder (default: the checkout's ``artifacts/tofu-lora``).
    """

    embedder: Any
    model_spec: str
    cache_dir: Path
    quick: bool
    out: Path
    data_root: Path | None = None
    adapters: Path | None = None
    _loaded: Any = field(default=None, repr=False)

    @property
    def loaded(self) -> Any:
        """The :class:`~steering.loading.LoadedModel`, loaded on first use and then reused."""
        if self._loaded is None:
            from steering.loading import load_model

            self._loaded = load_model(self.model_spec, cache_dir=self.cache_dir)
        return self._loaded

    def guard(self) -> Any:
        """A fresh :class:`~steering.guard.Guard` over the shared model (no forget set active)."""
        from steering.guard import Guard

        return Guard(self.loaded.model, self.loaded.tokenizer, self.embedder)


@dataclass(frozen=True)
class Benchmark:
    """One named benchmark of the report."""

    run: Callable[[EvalContext], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], list[str]]
    plots: Callable[[dict[str, Any], Path], list[Path]] = lambda section, out: []


def _gate_markdown(gate: dict[str, Any]) -> list[str]:
    lines = ["## tofu-gate", "",
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
    return [*lines, ""]


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


def _gate_plots(section: dict[str, Any], out: Path) -> list[Path]:
    path = out / "tofu_gate_roc.png"
    plot_gate_roc(section, path)
    return [path]


#: Benchmarks runnable by name, in report order.
BENCHMARKS: dict[str, Benchmark] = {
    "tofu-gate": Benchmark(run=lambda ctx: gate_bench.run(ctx.embedder, quick=ctx.quick),
                           markdown=_gate_markdown, plots=_gate_plots),
    "tofu": Benchmark(run=tofu_bench.run, markdown=tofu_bench.markdown, plots=tofu_bench.plots),
    "world-knowledge": Benchmark(run=world_knowledge.run, markdown=world_knowledge_report.markdown,
                                 plots=world_knowledge_report.plots),
    "world-knowledge-int8": Benchmark(run=world_knowledge.run_int8,
                                      markdown=world_knowledge_report.markdown_int8,
                                      plots=world_knowledge_report.plots_int8),
    "muse-knowmem": Benchmark(run=muse_bench.run, markdown=muse_bench.markdown, plots=muse_bench.plots),
    "rwku": Benchmark(run=rwku_report.run, markdown=rwku_report.markdown, plots=rwku_report.plots),
    "attacks": Benchmark(run=attacks_bench.run, markdown=attacks_bench.markdown, plots=attacks_bench.plots),
    "leak": Benchmark(run=leak_bench.run, markdown=leak_bench.markdown, plots=leak_bench.plots),
}


def run(names: Sequence[str] | None, *, embedder: Any, model_id: str, quick: bool, out: Path,
        model_spec: str | None = None, cache_dir: Path | None = None,
        data_root: Path | None = None, adapters: Path | None = None) -> dict[str, Any]:
    """Run the named benchmarks (all by default) and write the report files into ``out``."""
    chosen = list(dict.fromkeys(names)) if names else list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"expected benchmarks from {sorted(BENCHMARKS)}, found {unknown}", field="benchmark")
    out.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(embedder=embedder, model_spec=model_spec or model_id,
                      cache_dir=cache_dir or Path("guardit-data") / "models", quick=quick, out=out,
                      data_root=data_root, adapters=adapters)
    report: dict[str, Any] = {"model": model_id, "quick": quick, "benchmarks": {}, "plots": []}
    for name in chosen:
        logger.info("running benchmark %s", name)
        section = BENCHMARKS[name].run(ctx)
        report["benchmarks"][name] = section
        report["plots"] += [p.name for p in BENCHMARKS[name].plots(section, out)]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (numbers only)."""
    lines = [f"# guardit evaluation: {report['model']}{' (quick)' if report.get('quick') else ''}", ""]
    for name, section in report["benchmarks"].items():
        if name in BENCHMARKS:
            lines += BENCHMARKS[name].markdown(section)
    return "\n".join(lines)
