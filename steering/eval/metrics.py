"""Evaluation metrics (METHOD.md "Evaluation vocabulary"), each tested on hand-computed values."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace."""
    return " ".join(text.lower().split())


def contains_answer(output: str, answer: str) -> bool:
    """True when the reference answer appears in the output (case- and whitespace-insensitive)."""
    return normalize(answer) in normalize(output)


def tokens(text: str) -> list[str]:
    """Lower-case word tokens."""
    return _WORD.findall(text.lower())


def rouge_l_recall(output: str, reference: str) -> float:
    """ROUGE-L recall: LCS(output, reference) / |reference| over word tokens."""
    ref, hyp = tokens(reference), tokens(output)
    if not ref:
        return 0.0
    prev = [0] * (len(hyp) + 1)
    for r in ref:
        cur = [0] * (len(hyp) + 1)
        for j, h in enumerate(hyp, start=1):
            cur[j] = prev[j - 1] + 1 if r == h else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1] / len(ref)
