"""Report lines and plots of the ``world-knowledge`` benchmarks (GUARD-IT, arXiv 2605.12765): totals
per method, forgotten-item answer rates per topic, a forget-vs-utility scatter and per-topic bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_TOTALS_HEADER = ("| method | forgotten: contains answer | relative drop | ROUGE-L | P(answer) drop | "
                  "other: unchanged | other: contains answer | collapsed (forgotten / other) | neutral KL | "
                  "gate open (forgotten / other / neutral) |")


def describe_topics(section: dict[str, Any]) -> dict[str, str]:
    """A short label per topic: its first forgotten question, cut to 48 characters."""
    return {t: v["questions"][0][:48] + ("..." if len(v["questions"][0]) > 48 else "")
            for t, v in section["topics"].items()}


def _totals_row(name: str, m: dict[str, Any]) -> str:
    f, o = m["forget"], m["other"]
    cells = [name, f"{f['contains_answer']:.3f} (n={f['n']})", f"{f['contains_answer_relative_drop']:.3f}",
             f"{f['rouge_l']:.3f}", f"{f['answer_probability_relative_drop']:.3f}",
             f"{o['unchanged']:.3f} (n={o['n']})", f"{o['contains_answer']:.3f}",
             f"{f['collapsed']:.3f} / {o['collapsed']:.3f}", f"{m['neutral_kl']:.4f}",
             f"{f['gate_open']:.2f} / {o['gate_open']:.2f} / {m['neutral_gate_open']:.2f}"]
    return "| " + " | ".join(cells) + " |"


def _topic_rows(section: dict[str, Any], names: list[str]) -> list[str]:
    labels = describe_topics(section)
    lines = ["| topic | first question | n | k | alpha | " + " | ".join(names)
             + " | guardit collapsed | guardit other unchanged |", "|---" * (7 + len(names)) + "|"]
    for t, v in section["topics"].items():
        rates = " | ".join(f"{v['methods'][n]['forget']['contains_answer']:.2f}" for n in names)
        g = v["methods"].get("guardit")
        extra = f"{g['forget']['collapsed']:.2f} | {g['other']['unchanged']:.3f}" if g else "- | -"
        build = v["guardit"]
        lines.append(f"| {t} | {labels[t]} | {v['n_forget']} | {build['k']} | {build['alpha']} | {rates} | "
                     f"{extra} |")
    return lines


def markdown(section: dict[str, Any], title: str = "world-knowledge") -> list[str]:
    """Report lines: totals per method, then forgotten-item answer rates per topic."""
    tot = section["totals"]
    skipped = section["skipped_topics"] or "none"
    lines = [f"## {title} (forget a topic of known TOFU world facts / real authors)", "",
             f"{section['known']} of {section['candidates']} candidate questions known to the base model; "
             f"{len(section['topics'])} topics forgotten one at a time (skipped, too few known items: "
             f"{skipped}); greedy answers of up to {section['max_new_tokens']} tokens, "
             f"{section['batch_size']} rows per batch.",
             "", _TOTALS_HEADER, "|---" * 10 + "|"]
    lines += [_totals_row(name, m) for name, m in tot.items()]
    names = [n for n in tot if n != "unsteered"]
    lines += ["", "Per topic: contains-answer rate on the forgotten items (unsteered: 1 by selection); "
              "GUARD-IT's clusters k and calibrated alpha.", "", *_topic_rows(section, names)]
    quant = section.get("quantization")
    if quant:
        lines += ["", f"Quantization: {quant['scheme']}; {quant['quantized_linear']} linear layers "
                  f"quantized; residual hook calls per layer (forward / steered): {quant['hook_calls']}."]
    return [*lines, "", *[f"- {v}" for v in section["verdict"]], ""]


def markdown_int8(section: dict[str, Any]) -> list[str]:
    """Report lines of ``world-knowledge-int8``."""
    return markdown(section, "world-knowledge-int8")


def _scatter(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, m in section["totals"].items():
        x, y = m["other"]["unchanged"], m["forget"]["contains_answer_relative_drop"]
        ax.scatter(x, y, s=50)
        ax.annotate(f"{name} (collapsed {m['forget']['collapsed']:.0%})", (x, y), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.axvline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xlim(-0.05, 1.1)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("utility kept: other known answers unchanged")
    ax.set_ylabel("forget efficacy: relative drop of answer rate")
    ax.set_title("world knowledge: forget vs utility")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _topic_bars(section: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    topics = list(section["topics"])
    names = list(section["totals"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(topics) + 2), 3.8))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        ys = [section["topics"][t]["methods"][name]["forget"]["contains_answer"] for t in topics]
        ax.bar([i + (j - (len(names) - 1) / 2) * width for i in range(len(topics))], ys, width, label=name)
    ax.set_xticks(range(len(topics)), [f"topic {t}\n(n={section['topics'][t]['n_forget']})" for t in topics],
                  fontsize=8)
    ax.set_ylabel("contains-answer rate, forgotten items")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(section: dict[str, Any], out: Path, prefix: str = "world_knowledge") -> list[Path]:
    """Forget-vs-utility scatter per method and per-topic bars of the forgotten items' answer rate."""
    import matplotlib

    matplotlib.use("Agg")
    scatter, bars = out / f"{prefix}_forget_vs_utility.png", out / f"{prefix}_topics.png"
    _scatter(section, scatter)
    _topic_bars(section, bars)
    return [scatter, bars]


def plots_int8(section: dict[str, Any], out: Path) -> list[Path]:
    """The same plots for the int8 model."""
    return plots(section, out, prefix="world_knowledge_int8")
