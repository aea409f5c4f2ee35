"""What ``guardit`` prints for people: records, gate decisions, A/B answers and build progress.

Results go to stdout; notes (which registry or server, what a file held, build progress) to stderr, on
any stream: a pipe or a log file shows the same lines a terminal does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from steering.vectors import ProgressFn

#: Record fields shown by ``forget show``/``add``/``wait``, with their labels.
_FIELDS = (("n_documents", "documents"), ("n_clusters", "clusters"), ("silhouette", "silhouette"),
           ("layer", "layer"), ("threshold", "threshold"), ("alpha", "alpha"), ("enabled", "enabled"),
           ("subjects", "subjects"), ("reason", "registered for"), ("requested_by", "requested by"),
           ("ticket", "ticket"), ("created_at", "created"), ("activated_at", "activated"),
           ("revoked_at", "revoked"), ("build_seconds", "build seconds"), ("error", "error"))


def note(text: str) -> None:
    """One line on stderr."""
    sys.stderr.write(f"guardit: {text}\n")
    sys.stderr.flush()


def print_record(record: dict[str, Any], *, revoke_reason: str | None = None) -> None:
    """A forget set as ``id  name  [status]`` and one labelled line per known field."""
    lines = [f"{record['id']}  {record.get('name', '')}  [{record['status']}]"]
    if revoke_reason is not None:
        lines.append(f"  {'revoke reason':<15}{revoke_reason}")
    for key, label in _FIELDS:
        value = record.get(key)
        if key == "enabled" and record.get("status") == "revoked":
            continue  # a revoked set steers nothing, whatever the flag says
        if value is not None and value != []:
            lines.append(f"  {label:<15}{', '.join(value) if isinstance(value, list) else value}")
    sys.stdout.write("\n".join(lines) + "\n")


def build_state(record: dict[str, Any]) -> str:
    """``building: embed 40%`` from a record's status and, when the builder reports them, its phase and
    progress."""
    text = str(record["status"])
    phase, progress = record.get("build_phase"), record.get("build_progress")
    if phase:
        text += f": {phase}"
    if progress is not None:
        text += f" {100 * progress:.0f}%"
    return text


def build_progress(tty: bool) -> ProgressFn:
    """The builder's ``progress(stage, done, total)`` as a tqdm bar on a terminal, else as lines at
    every tenth and at the end of each stage. The steering vectors come last (the retain stage); what
    follows reports no progress, so it is announced."""

    def after(stage: str, done: int, total: int) -> None:
        if stage == "retain" and done >= total:
            note("build: vectors ready; choosing alpha (a QA set is answered at each strength: the longest "
                 "phase) and activating")

    if tty:
        from tqdm import tqdm

        bars: dict[str, Any] = {}

        def bar(stage: str, done: int, total: int) -> None:
            b = bars.get(stage)
            if b is None:
                b = bars[stage] = tqdm(total=total, desc=f"{stage} documents", unit="doc", file=sys.stderr)
            b.update(done - b.n)
            if done >= total:
                b.close()
            after(stage, done, total)

        return bar
    shown: dict[str, int] = {}

    def lines(stage: str, done: int, total: int) -> None:
        step = 10 * done // max(total, 1)
        if shown.get(stage, -1) < step:
            shown[stage] = step
            note(f"build: {stage} documents {done}/{total}")
        after(stage, done, total)

    return lines


def _set(fs_id: str, name_of: Callable[[str], str]) -> str:
    name = name_of(fs_id)
    return f"{fs_id} ({name})" if name else fs_id


def print_gate(prompts: list[str], results: list[dict[str, Any]], name_of: Callable[[str], str]) -> None:
    """One line per prompt: the decision, then each open cluster (set id, name, cluster, similarity)."""
    for prompt, result in zip(prompts, results, strict=True):
        short = prompt if len(prompt) <= 100 else prompt[:99] + "\u2026"
        if not result["steered"]:
            sys.stdout.write(f"closed  {short}\n")
            continue
        sys.stdout.write(f"OPEN    {short}\n")
        for m in result["matched"]:
            sys.stdout.write(f"        {_set(m['forget_set_id'], name_of)} cluster "
                             f"{m['cluster']}  similarity {m['similarity']:.3f}\n")


def print_answer(payload: dict[str, Any], name_of: Callable[[str], str]) -> None:
    """``generate``: the text; with ``--ab`` the gate decision and both arms."""
    if "steered" not in payload or not isinstance(payload["steered"], dict):
        sys.stdout.write(payload["text"] + "\n")
        _abstained(payload)
        return
    steered, unsteered = payload["steered"], payload["unsteered"]
    matched = ", ".join(f"{_set(m['forget_set_id'], name_of)} cluster {m['cluster']} "
                        f"({m['similarity']:.3f})" for m in payload["matched"])
    how = "OPEN on the answer (re-checked): " if steered["guardit"].get("rechecked") else "OPEN: "
    sys.stdout.write(f"gate: {how + matched if matched else 'closed (identical to the base model)'}\n")
    sys.stdout.write(f"--- steered\n{steered['text']}\n")
    _abstained(steered)
    sys.stdout.write(f"--- unsteered\n{unsteered['text']}\n")


def _abstained(arm: dict[str, Any]) -> None:
    info = arm.get("guardit") or {}
    if info.get("abstained"):
        reason = info.get("abstain_reason") or info.get("reason")
        sys.stdout.write(f"(abstained{': ' + str(reason) if reason else ''})\n")
