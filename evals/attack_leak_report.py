"""Markdown tables and plots of the ``attacks`` and ``leak`` benchmarks (``evals.attacks_bench``,
``evals.leak_bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steering.probes import KINDS


def _order(kinds: Any) -> list[str]:
    rank = {k: i for i, k in enumerate(KINDS)}
    return sorted(kinds, key=lambda k: (rank.get(k, len(rank)), k))


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def attack_markdown(section: dict[str, Any]) -> list[str]:
    """Per attack class and set: gate-open rate (all probes) and bypasses over known probes."""
    sets = section["sets"]
    names = list(sets)
    lines = ["## attacks", "",
             f"alpha {section['alpha']} (model default, not calibrated), threshold {section['threshold']}. "
             "Cells: gate-open rate (probes) / bypassed of known (generated).", "",
             "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    kinds = _order({k for s in sets.values() for k in s["kinds"]})
    for kind in kinds:
        cells = []
        for name in names:
            r = sets[name]["kinds"].get(kind)
            if r is None:
                cells.append("")
                continue
            cell = f"{r['open_rate']:.2f} ({r['probes']})"
            if "generated" in r:
                cell += f" / {r['bypassed']}/{r['known']} ({r['generated']})"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Benign false-open rate (probes):", "", "| shape | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for kind in sorted({k for s in sets.values() for k in s["benign"]}):
        cells = [f"{r['open_rate']:.2f} ({r['probes']})" if (r := sets[n]["benign"].get(kind)) else "" for n in names]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)


def _figure(panels: list[tuple[list[str], dict[str, list[float | None]], str, str]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for ax, (groups, series, title, ylabel) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, groups, series, title, ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def attack_plots(section: dict[str, Any], out: Path) -> list[Path]:
    """``attacks.png``: gate-open and bypass rate per class and set, benign false opens per shape."""
    sets = section["sets"]
    kinds = _order({k for s in sets.values() for k in s["kinds"]})
    benign = sorted({k for s in sets.values() for k in s["benign"]})
    opened = {n: [s["kinds"].get(k, {}).get("open_rate") for k in kinds] for n, s in sets.items()}
    bypass = {n: [s["kinds"].get(k, {}).get("bypass_rate") for k in kinds] for n, s in sets.items()}
    false = {n: [s["benign"].get(k, {}).get("open_rate") for k in benign] for n, s in sets.items()}
    return [_figure([(kinds, opened, "gate opens on attack probes (higher is better)", "open rate"),
                     (kinds, bypass, "bypass rate over known probes (lower is better)", "bypass rate"),
                     (benign, false, "benign false opens (lower is better)", "false-open rate")],
                    out / "attacks.png")]


def leak_markdown(section: dict[str, Any]) -> list[str]:
    """Per kind and family: leaked/known, abstain, degenerate, changed (neighbours)."""
    fams = section["families"]
    lines = ["## leak", "", f"alpha {section['alpha']} (model default, not calibrated). "
             "Cells: leaked/known, abstain rate, degenerate rate (forget kinds); changed rate (neighbours).", "",
             "| kind | " + " | ".join(fams) + " | all |", "|---|" + "---|" * (len(fams) + 1)]
    tables = {**{f: v["kinds"] for f, v in fams.items()}, "all": section["kinds"]}
    for kind in _order({k for t in tables.values() for k in t}):
        cells = []
        for table in tables.values():
            r = table.get(kind)
            if r is None:
                cells.append("")
            elif r["negative"]:
                cells.append(f"changed {r['changed']}/{r['probes']}")
            else:
                cells.append(f"{r['leaked']}/{r['known']}, ab {r['abstain_rate']:.2f}, "
                             f"deg {r['degenerate_rate']:.2f} ({r['probes']})")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    t = section["totals"]
    f, n = t["forget"], t["neighbour"]
    lines += ["", f"All forget probes: leak {f['leaked']}/{f['known']} = {_rate(f['leak_rate'])}, abstain "
              f"{_rate(f['abstain_rate'])}, degenerate {_rate(f['degenerate_rate'])} ({f['probes']} probes); "
              f"neighbours changed {n['changed']}/{n['probes']} = {_rate(n['changed_rate'])}.", ""]
    return lines


def leak_plots(section: dict[str, Any], out: Path) -> list[Path]:
    """``leak.png``: leak, abstain and degenerate rate per forget kind, changed rate per neighbour kind."""
    kinds = section["kinds"]
    forget = _order([k for k, r in kinds.items() if not r["negative"]])
    negative = _order([k for k, r in kinds.items() if r["negative"]])
    rates = {name: [kinds[k][f"{name}_rate"] for k in forget] for name in ("leak", "abstain", "degenerate")}
    changed = {"changed": [kinds[k]["changed_rate"] for k in negative]}
    return [_figure([(forget, rates, "forget probes, all sets (leak over known)", "rate"),
                     (negative, changed, "neighbour answers changed", "rate")], out / "leak.png")]
