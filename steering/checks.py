"""Answer checks the product runs on generated text: does an output give a reference answer, and
is it degenerate: collapsed (the paper's third axis, arXiv 2605.12765), an echo of the question, or
off the question's topic. Evaluation reuses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

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


#: Function words ignored when comparing what a question and an answer are about.
STOPWORDS: frozenset[str] = frozenset(
    "a an the and or but if of in on at to for from by with about as into onto over under than then "
    "is are was were be been being am do does did done has have had having will would shall should can "
    "could may might must it its this that these those there here what which who whom whose when where "
    "why how i me my we our you your he him his she her they them their not no yes so very also just "
    "s t d ll re ve m any some all each every other such only own same more most much many one".split())

#: ``[n, d_embed]`` unit embeddings of n texts (``steering.vectors.embed`` with an embedder bound).
EmbedFn = Callable[[Sequence[str]], np.ndarray]

#: Cosine below which an answer is off the question's topic (all-MiniLM-L6-v2: unrelated sentence
#: pairs score about -0.1 to 0.09, a question and an on-topic answer, even a wrong one, 0.3 and up;
#: a plain "I don't have information about that." 0.12).
OFF_TOPIC_COSINE = 0.1


def content_words(text: str) -> list[str]:
    """Word tokens that are not function words, cut to their first five letters (a crude stem: "wrote"
    and "writer" stay apart, "physics" and "physicist" meet)."""
    return [w[:5] for w in tokens(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def is_echo(question: str, answer: str, *, max_new: float = 0.2) -> bool:
    """True when the answer mostly repeats the question: it has at least two content words and at
    most ``max_new`` of them (and at most one) are not in the question ("What is the capital of
    France? The capital of France is the capital" is an echo, "The capital of France is Paris." is not).
    """
    said = content_words(answer)
    if len(said) < 2:
        return False
    asked = set(content_words(question))
    new = [w for w in said if w not in asked]
    return len(new) <= 1 and len(new) / len(said) <= max_new


def is_off_topic(question: str, answer: str, *, embed: EmbedFn | None = None, min_words: int = 6,
                 min_cosine: float = OFF_TOPIC_COSINE) -> bool:
    """True when the answer is about something else than the question.

    With ``embed``: the cosine of the two embeddings is below ``min_cosine``. Without: lexical, the
    answer has ``min_words`` or more content words and shares none with a question of two or more
    (cruder: a correct answer in other words, "Who wrote Hamlet?" -> "A playwright from
    Stratford-upon-Avon, around the year 1600.", reads as off topic; use the embedding test where
    an embedder is at hand).
    """
    if embed is not None:
        if not tokens(answer):
            return False
        vecs = np.asarray(embed([question, answer]), dtype=np.float64)  # [2, d_embed]
        norms = np.linalg.norm(vecs, axis=1).clip(min=1e-12)
        return float(vecs[0] @ vecs[1] / (norms[0] * norms[1])) < min_cosine
    asked, said = set(content_words(question)), content_words(answer)
    return len(asked) >= 2 and len(said) >= min_words and not asked.intersection(said)


#: A lead-in is at most this many words ("King's original answer is:").
LEAD_IN_WORDS = 8


def is_lead_in(answer: str) -> bool:
    """True when the answer only announces a reply it never gives: a few words ending in a colon
    ("King's original answer is:", "Here are the facts:"). A longer answer cut off by the token limit
    after a colon is not one."""
    text = answer.strip()
    return text.endswith(":") and len(tokens(text)) <= LEAD_IN_WORDS


def is_degenerate(question: str, answer: str, *, embed: EmbedFn | None = None) -> bool:
    """An answer that is no proper reply to ``question``: collapsed, an echo of the question, a lead-in
    with nothing after it, or off its topic (``is_off_topic``, by embedding when ``embed`` is given)."""
    return (is_collapsed(answer) or is_echo(question, answer) or is_lead_in(answer)
            or is_off_topic(question, answer, embed=embed))


def degenerate_flags(questions: Sequence[str], answers: Sequence[str], *, embed: EmbedFn | None = None,
                     min_cosine: float = OFF_TOPIC_COSINE) -> list[bool]:
    """``is_degenerate`` for many pairs, with one embedding call for all of them."""
    if len(questions) != len(answers):
        raise ValueError(f"expected one answer per question, found {len(questions)} questions and "
                         f"{len(answers)} answers")
    flags = [is_collapsed(a) or is_echo(q, a) or is_lead_in(a) for q, a in zip(questions, answers, strict=True)]
    if embed is None:
        return [f or is_off_topic(q, a) for f, q, a in zip(flags, questions, answers, strict=True)]
    rows = [i for i, (f, a) in enumerate(zip(flags, answers, strict=True)) if not f and tokens(a)]
    if rows:
        vecs = np.asarray(embed([questions[i] for i in rows] + [answers[i] for i in rows]), dtype=np.float64)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-12)  # [2 * n, d_embed]
        cos = (vecs[: len(rows)] * vecs[len(rows):]).sum(axis=1)  # [n]
        for i, c in zip(rows, cos, strict=True):
            flags[i] = bool(c < min_cosine)
    return flags


# -- closed questions: confirm, deny or choose ---------------------------------------------------
_AUX = ("is are was were do does did has have had can could will would should shall may might must "
        "isn't aren't wasn't weren't don't doesn't didn't hasn't haven't hadn't can't couldn't won't "
        "wouldn't").split()
_CLOSED_START = re.compile(r"^(?:" + "|".join(re.escape(a) for a in _AUX) + r")\s+\w", re.I)
_CLOSED_ANY = re.compile(r"\b(?:true or false|yes or no|right or wrong|correct or (?:not|incorrect)|which of the "
                         r"(?:following|options|choices)|multiple choice|choose (?:one|the)|pick (?:one|the))\b"
                         r"|,\s*(?:right|correct|true|isn't it|wasn't (?:it|he|she)|didn't (?:he|she|they))\s*\?",
                         re.I)
_REQUEST = re.compile(r"^(?:can|could|would|will|do)\s+(?:you|u)\b", re.I)
#: Labelled options: "(a) ... (b)", "A) ... B)", "1. ... 2.".
_OPTION = re.compile(r"(?:^|\s)\(?([A-Da-d1-4])[).:]\s")
_EITHER = re.compile(r"\b\w[\w'\-]*(?:\s+\w[\w'\-]*){0,3}\s+or\s+\w[\w'\-]*(?:\s+\w[\w'\-]*){0,3}\s*\?")
_VERDICT = re.compile(r"^\W*(?:yes|no|yeah|yep|nope|true|false|correct|incorrect|right|wrong|indeed|absolutely|"
                      r"certainly|definitely|of course|not really|that'?s (?:right|correct|true|wrong|false)|"
                      r"that is (?:right|correct|true|wrong|false)|the (?:correct )?answer is|option\s+\w\b|"
                      r"\(?[A-Da-d1-4][).:](?:\s|$))", re.I)


def last_question(text: str | None) -> str:
    """The last sentence of ``text`` that asks something (else its last sentence), at most 400 characters."""
    parts = [s.strip() for s in (text or "").replace("\n", ". ").split(". ") if s.strip()]
    asked = [s for s in parts if "?" in s]
    return (asked or parts or [""])[-1][-400:]


def is_closed_question(question: str) -> bool:
    """True when ``question`` asks to confirm, deny or choose rather than to tell: a yes/no question
    ("Was he born in Kuwait City?", "..., right?"), true or false, either/or ("... in Paris or in
    Kuwait City?"), or a multiple choice (labelled options, "which of the following")."""
    asked = re.findall(r"[^?]*\?", last_question(question))  # "Who is he? Was he born in Paris?": the last one
    last = asked[-1].strip() if asked else last_question(question)
    if _REQUEST.match(last):
        return False  # "Can you name ...", "Do you know ...": asks to tell
    if _CLOSED_START.match(last) or _CLOSED_ANY.search(question) or _EITHER.search(last):
        return True
    return len({m.group(1).lower() for m in _OPTION.finditer(question)}) >= 2


def is_verdict(question: str, answer: str) -> bool:
    """True when ``answer`` confirms, denies or picks for the closed ``question`` (``is_closed_question``):
    it opens with a verdict ("Yes", "No, ...", "True", "The answer is", an option label), or it is short
    and repeats words of one of the question's own alternatives. Whether the verdict is right does
    not matter: answering a closed question about a forgotten subject either way tells whether the
    claim was right (an abstention on right claims only would be an oracle)."""
    if not answer.strip() or not is_closed_question(question):
        return False
    if _VERDICT.match(answer):
        return True
    said = content_words(answer)
    return 0 < len(said) <= 12 and len(set(said) & set(content_words(question))) >= max(1, len(set(said)) // 2)
