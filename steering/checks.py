"""Answer checks the product runs on generated text: does an output give a reference answer, and
is it collapsed (the paper's third axis, arXiv 2605.12765). Evaluation reuses them.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace."""
    return " ".join(text.lower().split())


def contains_answer(output: str, answer: str) -> bool:
    """True when the reference answer appears in the output (case- and whitespace-insensitive)."""
    return normalize(answer) in normalize(output)


def gives_answer(output: str, answer: str, *, long_words: int = 8, min_rouge: float = 0.5) -> bool:
    """True when ``output`` gives the reference answer: contains it, or, for an answer longer than
    ``long_words`` words (TOFU's sentences, which no model repeats verbatim), has ROUGE-L recall
    >= ``min_rouge`` against the answer's first as many words as the output has (a short generation
    is not penalised for stopping early)."""
    if contains_answer(output, answer):
        return True
    ref, out = tokens(answer), tokens(output)
    if len(ref) <= long_words or not out:
        return False
    return rouge_l_recall(output, " ".join(ref[:len(out)])) >= min_rouge


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

    Empty: no word. Repetitive: some word 3-gram occurs three or more times; fewer than 40% of the
    words (for 10+ words) are distinct; a run of one to four words repeated three times in a row
    ("the the the", "of the of the of the", even in a short answer); or a stutter inside a word (a
    letter four times in a row, or a piece of two or more letters three times: "aaaa", "hahaha").
    Not language: a "word" of more than 30 letters (words glued together), or, in an output of
    four or more words, under half the non-space characters are letters (a short answer such as
    "1472." or "10%" is language).
    """
    words = tokens(text)
    if not words:
        return True
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if grams and max(grams.count(g) for g in set(grams)) >= 3:
        return True
    if len(words) >= 10 and len(set(words)) / len(words) < 0.4:
        return True
    if _tandem_repeat(words) or any(_STUTTER.search(w) or len(w) > 30 for w in words):
        return True
    chars = [c for c in text if not c.isspace()]
    return len(words) >= 4 and sum(c.isalpha() for c in chars) < 0.5 * len(chars)


#: A letter four times in a row, or a run of 2+ letters three times in a row, inside one word.
_STUTTER = re.compile(r"([^\W\d_])\1{3}|([^\W\d_]{2,})\2{2}")


def _tandem_repeat(words: list[str], max_n: int = 4) -> bool:
    """True when some run of 1..max_n words occurs three times back to back."""
    for n in range(1, max_n + 1):
        for i in range(len(words) - 3 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n] == words[i + 2 * n : i + 3 * n]:
                return True
    return False
