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


def is_collapsed(text: str) -> bool:
    """The paper's third axis: an output that is empty, repetitive, or not language.

    Empty: no word. Repetitive: some word 3-gram occurs three or more times, or fewer than 40% of
    the words (for 10+ words) are distinct. Not language: under half the non-space characters are
    letters.
    """
    words = tokens(text)
    if not words:
        return True
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if grams and max(grams.count(g) for g in set(grams)) >= 3:
        return True
    if len(words) >= 10 and len(set(words)) / len(words) < 0.4:
        return True
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) < 0.5 * len(chars)
