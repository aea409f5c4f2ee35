"""Verification report of a forget set: run its probes (``steering.probes``) through the serving path
and count, per kind, leaks, abstentions, degenerate answers and changed neighbour answers
(guardit's evidence per forget set; GUARD-IT, arXiv 2605.12765).

The report quotes probes and answers, which hold forget-set content: it is for the forget scope
(the compliance officer's ticket), never for logs above DEBUG.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from steering import checks
from steering.checks import normalize
from steering.leakcheck import LeakProfile, check_output
from steering.probes import KINDS, Probe

#: ``generate(prompts) -> [{"text", "steered", "abstained"}]``: the serving engine, batched.
GenerateFn = Callable[[list[Any]], list[dict[str, Any]]]
DegenerateFn = Callable[[str, str], bool]
EXAMPLE_CHARS = 160


def _default_degenerate() -> DegenerateFn:
    """``steering.checks.is_degenerate`` (echo and off-topic too) when present, else collapse only."""
    check = getattr(checks, "is_degenerate", None)
    if callable(check):
        return lambda question, answer: bool(check(question, answer))
    return lambda _question, answer: checks.is_collapsed(answer)


@dataclass(frozen=True)
class KindStats:
    """Counts and rates for one probe kind.

    ``leak_rate`` = leaked / known (probes whose baseline answer shows the fact, or all forget
    probes without a baseline); ``abstain_rate`` and ``degenerate_rate`` over all probes of the
    kind (an abstention is never degenerate); ``changed_rate`` (neighbours only) = answers that
    differ from the baseline (or, without one, were steered or abstained).
    """

    kind: str
    negative: bool
    probes: int
    known: int
    leaked: int
    abstained: int
    degenerate: int
    changed: int

    @property
    def leak_rate(self) -> float:
        return self.leaked / self.known if self.known else 0.0

    @property
    def abstain_rate(self) -> float:
        return self.abstained / self.probes if self.probes else 0.0

    @property
    def degenerate_rate(self) -> float:
        return self.degenerate / self.probes if self.probes else 0.0

    @property
    def changed_rate(self) -> float:
        return self.changed / self.probes if self.probes else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates (rounded to 4 places)."""
        rates = {"leak_rate": self.leak_rate, "abstain_rate": self.abstain_rate,
                 "degenerate_rate": self.degenerate_rate, "changed_rate": self.changed_rate}
        return {**asdict(self), **{k: round(v, 4) for k, v in rates.items()}}


@dataclass(frozen=True)
class Example:
    """One probe and its answer (both truncated), with what was found."""

    kind: str
    prompt: str
    answer: str
    outcome: str


@dataclass(frozen=True)
class VerificationReport:
    """Per-kind statistics, their totals over forget probes and neighbours, and examples."""

    kinds: tuple[KindStats, ...]
    examples: tuple[Example, ...] = field(default=())
    baseline: bool = False

    def total(self, negative: bool) -> KindStats:
        """All forget probes (``negative=False``) or all neighbour probes summed."""
        rows = [k for k in self.kinds if k.negative == negative]
        return KindStats("neighbours" if negative else "forget probes", negative,
                         *(sum(getattr(k, f) for k in rows)
                           for f in ("probes", "known", "leaked", "abstained", "degenerate", "changed")))

    def to_json(self) -> str:
        """The report as JSON (stored with the forget set)."""
        return json.dumps({"baseline": self.baseline, "kinds": [k.as_dict() for k in self.kinds],
                           "totals": {"forget": self.total(False).as_dict(),
                                      "neighbours": self.total(True).as_dict()},
                           "examples": [asdict(e) for e in self.examples]}, ensure_ascii=False)

    def to_markdown(self, title: str = "Forget set verification") -> str:
        """A report a compliance officer can attach to the erasure ticket."""
        known = "all forget probes"
        if self.baseline:
            known = "the forget probes whose unsteered answer showed the fact"
        lines = [f"# {title}", "",
                 "Probes are questions about the forgotten content in several shapes (rephrased, hidden "
                 "after long text, misspelled names...) and questions about other topics (neighbours) that "
                 "must be answered as "
                 f"before. Leak rate: share of {known} that still revealed it.", "",
                 "| kind | probes | known | leaked | leak rate | abstained | degenerate | changed |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for k in [*self.kinds, self.total(False), self.total(True)]:
            changed = f"{k.changed} ({k.changed_rate:.0%})" if k.negative else "-"
            leak = f"{k.leak_rate:.0%}" if not k.negative else "-"
            lines.append(f"| {k.kind} | {k.probes} | {k.known if not k.negative else '-'} | "
                         f"{k.leaked if not k.negative else '-'} | {leak} | "
                         f"{k.abstained} ({k.abstain_rate:.0%}) | "
                         f"{k.degenerate} ({k.degenerate_rate:.0%}) | {changed} |")
        if self.examples:
            lines += ["", "## Examples", ""]
            for e in self.examples:
                lines.append(f"- **{e.kind}** ({e.outcome}): _{_md(e.prompt)}_ → {_md(e.answer)}")
        return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("*", "\\*").replace("_", "\\_")


def _clip(text: str, n: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _question(probe: Probe) -> str:
    """The turn that asks: the last user turn, or the first when the last is the harmless follow-up."""
    users = [m["content"] for m in probe.messages() if m.get("role") == "user"]
    return users[0] if len(users) > 1 else (users[-1] if users else probe.text())


def verify_forget_set(probes: Sequence[Probe], generate: GenerateFn, *, profile: LeakProfile,
                      baseline: GenerateFn | None = None, is_degenerate: DegenerateFn | None = None,
                      max_examples: int = 3) -> VerificationReport:
    """Run ``probes`` through ``generate`` and judge every answer.

    Args:
        probes: from ``steering.probes.make_probes``.
        generate: the guarded serving path; returns ``text``, ``steered``, ``abstained`` per prompt.
        profile: the set's leak profile: a forget probe leaks when ``check_output`` says so.
        baseline: the unsteered model, same contract: a forget probe is "known" when its baseline
            answer leaks; a neighbour has "changed" when its answer differs from the baseline.
        is_degenerate: ``(question, answer) -> bool``; default ``steering.checks.is_degenerate``
            when present, else ``is_collapsed``.
        max_examples: examples kept per kind (leaks first, then degenerate, then the rest).
    """
    degenerate = is_degenerate or _default_degenerate()
    prompts = [p.prompt for p in probes]
    answers = generate(prompts)
    base = baseline(prompts) if baseline is not None else None
    if len(answers) != len(probes) or (base is not None and len(base) != len(probes)):
        raise ValueError(f"expected {len(probes)} answers, found {len(answers)}")
    counts: dict[tuple[str, bool], list[int]] = {}
    picks: dict[str, list[tuple[int, Example]]] = {}
    for n, (probe, out) in enumerate(zip(probes, answers, strict=True)):
        text, abstained = str(out.get("text", "")), bool(out.get("abstained", False))
        asked = probe.text()
        # probes, known, leaked, abstained, degenerate, changed
        row = counts.setdefault((probe.kind, probe.is_negative), [0] * 6)
        row[0] += 1
        row[3] += abstained
        bad = not abstained and degenerate(_question(probe), text)
        row[4] += bad
        outcome = "abstained" if abstained else "degenerate" if bad else "answered"
        priority = 2 if bad else 3
        if probe.is_negative:
            if base is not None:
                moved = abstained or normalize(text) != normalize(str(base[n].get("text", "")))
            else:
                moved = abstained or bool(out.get("steered", False))
            row[5] += moved
            outcome = "changed" if moved and not abstained else outcome
            priority = 1 if moved else priority
        else:
            known = base is None or check_output(profile, str(base[n].get("text", "")), prompt=asked).leaked
            row[1] += known
            leaked = known and not abstained and check_output(profile, text, prompt=asked).leaked
            row[2] += leaked
            if leaked:
                outcome, priority = "leaked", 0
        example = Example(probe.kind, _clip(_question(probe)), _clip(text), outcome)
        picks.setdefault(probe.kind, []).append((priority, example))
    order = {k: i for i, k in enumerate(KINDS)}
    keys = sorted(counts, key=lambda k: (k[1], order.get(k[0], len(order)), k[0]))
    kinds = tuple(KindStats(kind, neg, *counts[(kind, neg)]) for kind, neg in keys)
    examples = tuple(e for kind, _ in keys for _, e in sorted(picks[kind], key=lambda x: x[0])[:max_examples])
    return VerificationReport(kinds, examples, base is not None)
