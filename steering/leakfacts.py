"""Specific facts in forget-set text, for the leak check (``steering.leakcheck``): names, titles,
dates, numbers, rare words and phrases, graded against common English (``data/common_english.txt``,
wordfreq-derived) and the neutral corpus (guardit's addition to GUARD-IT, arXiv 2605.12765).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from steering.entities import fold
from steering.forget_set import ForgetDocuments

STRONG, WEAK = 1.0, 0.5
#: Common-English rank from which a word is specific (about the 10,000 most frequent are not).
RARE_RANK = 10000
STOPWORDS = frozenset("""
a an the this that these those what who whom whose which when where why how is are was were be been
being did does do has have had can could would should will may might in on at of for from by with
about as and or but if then so to into onto over under than also not no his her hers he she it its
they them their there here i you we our your my me him us one two three four five six seven eight
nine ten some any all each both other such very more most many much only own same just well""".split())
_CONNECT = frozenset("of the de du da di al el la le von van der den bin ibn del y".split())
_MONTHS = ("january february march april may june july august september october november december").split()
_TOKEN = re.compile(r"\w+")
_NAME = re.compile(r"[A-Z][\w\-]*(?:'[A-Z][\w\-]*)?(?:\s+(?:(?:"
                   + "|".join(sorted(_CONNECT)) + r")\s+)*(?:[A-Z][\w\-]*|\d+))*")
_TITLE = re.compile(r"(?:(?<=\s)|^|(?<=\())['\"“‘]([A-Z][^'\"”’\n]{2,80}?)[.,]?['\"”’]")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
_DATE_DMY = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(" + "|".join(_MONTHS) + r"),?\s+(\d{4})\b", re.I)
_DATE_MDY = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I)


@lru_cache(maxsize=1)
def _ranks() -> dict[str, int]:
    text = resources.files("steering").joinpath("data/common_english.txt").read_text(encoding="utf-8")
    words = [w for w in text.splitlines() if w and not w.startswith("#")]
    return {w: i for i, w in enumerate(words)}


@lru_cache(maxsize=1)
def _neutral() -> frozenset[str]:
    text = resources.files("steering").joinpath("data/neutral_corpus.txt").read_text(encoding="utf-8")
    return frozenset(_TOKEN.findall(fold(text)))


@lru_cache(maxsize=1)
def _neutral_lines() -> tuple[str, ...]:
    text = resources.files("steering").joinpath("data/neutral_corpus.txt").read_text(encoding="utf-8")
    return tuple(norm(line) for line in text.splitlines() if line.strip())


def rank(word: str) -> int | None:
    """Frequency rank of a folded word in common English (0 = most common), None when not among
    the 30,000 listed."""
    return _ranks().get(word)


def is_rare(word: str, limit: int = RARE_RANK) -> bool:
    r = rank(word)
    return not word.isdigit() and (r is None or r >= limit)


def norm(text: str) -> str:
    """Folded word tokens joined by single spaces; dates as "d month yyyy", "1,000" as "1000"."""
    text = _DATE_MDY.sub(lambda m: f"{m.group(2)} {m.group(1)} {m.group(3)}", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(_TOKEN.findall(fold(text)))


@dataclass(frozen=True)
class Fact:
    """One item of a unit: ``text`` (normalised, see ``norm``), its ``kind`` and ``weight``."""

    text: str
    kind: str
    weight: float


def _name_weight(words: Sequence[str]) -> float:
    core = [w for w in words if w not in _CONNECT]
    if any(w.isdigit() for w in core) and len(core) >= 2:
        return WEAK
    if any(rank(w) is None and not w.isdigit() for w in core) or sum(is_rare(w) for w in core) >= 2:
        return STRONG
    return WEAK


def mine_facts(text: str, *, subjects: Iterable[str] = ()) -> list[Fact]:
    """The specific facts one text states (see the module docstring for kinds and weights)."""
    facts: dict[str, Fact] = {}

    def add(raw: str, kind: str, weight: float) -> None:
        key = norm(raw)
        if key and (key not in facts or facts[key].weight < weight):
            facts[key] = Fact(key, kind, weight)

    for title in _TITLE.findall(text):
        if len(norm(title).split()) >= 2:
            add(title, "title", STRONG)
    for m in list(_DATE_DMY.finditer(text)) + list(_DATE_MDY.finditer(text)):
        add(m.group(0), "date", STRONG)
    for num in _NUMBER.findall(text):
        digits = num.replace(",", "")
        if len(digits.split(".")[0]) >= 3 or "." in digits:  # a day or a small count says little
            add(digits, "number", WEAK)
    for m in _NAME.finditer(text):
        words = norm(m.group(0)).split()
        while words and (words[0] in STOPWORDS or words[0] in _CONNECT):
            words = words[1:]
        while words and words[-1] in _CONNECT:
            words = words[:-1]
        at_start = re.search(r"(?:^|[.!?:;]\s+|\n)[\"'(“]?$", text[: m.start()]) is not None
        if not words or words[0] in _MONTHS or (len(words) == 1 and (
                len(words[0]) < 3 or words[0].isdigit() or (at_start and not is_rare(words[0])))):
            continue
        # A common word capitalised ("Literature", "Japan") is no specific fact, but the set's subject
        # when most documents name it (kind ``proper``).
        single_common = len(words) == 1 and not is_rare(words[0])
        add(" ".join(words), "proper" if single_common else "name", _name_weight(words))
        rest = words[1:]
        while rest and (rest[0] in STOPWORDS or rest[0] in _CONNECT):
            rest = rest[1:]
        if at_start and rest:  # "Author Basil Mahfouz ...": the first word may not be the name's
            add(" ".join(rest), "name", _name_weight(rest))
    neutral = " ".join(_neutral_lines())
    for segment in re.split(r"[.,;:!?()\[\]\"“”]", text):
        tokens = _TOKEN.findall(segment)
        for w in tokens:
            f = fold(w)
            if w[:1].islower() and f not in STOPWORDS and len(f) >= 4 and is_rare(f) and f not in _neutral():
                add(f, "word", WEAK)
        for a, b in zip(tokens, tokens[1:], strict=False):
            fa, fb = fold(a), fold(b)
            if a[:1].islower() and b[:1].islower() and fa not in STOPWORDS and fb not in STOPWORDS \
                    and min(len(fa), len(fb)) > 2 and (is_rare(fa, 3000) or is_rare(fb, 3000)) \
                    and f" {fa} {fb} " not in f" {neutral} ":
                add(f"{fa} {fb}", "phrase", WEAK)
    forms = [f" {norm(s)} " for s in subjects]
    # The subject's name is the subject (an anchor), whatever form mined it; so is a name that holds
    # it ("author basil mahfouz al kuwaiti").
    return [f for key, f in facts.items() if f" {key} " not in forms
            and not (f.kind == "name" and any(form in f" {key} " for form in forms))]


def mine_subjects(texts: Sequence[str], *, share: float = 0.3) -> list[str]:
    """Names (see ``mine_facts``) that at least ``share`` of the texts (and two) mention."""
    counts: dict[str, int] = {}
    for text in texts:
        for f in {f.text for f in mine_facts(text) if f.kind in ("name", "proper")}:
            counts[f] = counts.get(f, 0) + 1
    need = max(2.0, share * len(texts))
    # A subject is someone or something specific: "African American" in many answers is a topic.
    counts = {n: c for n, c in counts.items() if any(is_rare(w, 5000) for w in n.split())}
    return sorted((n for n, c in counts.items() if c >= need), key=lambda n: (-counts[n], n))


def subject_forms(subjects: Iterable[str]) -> list[str]:
    """Each subject name, and its last word alone when that word is specific ("einstein")."""
    forms: dict[str, None] = {}
    for s in subjects:
        words = norm(s).split()
        if words and len(" ".join(words)) >= 3:
            forms[" ".join(words)] = None
            if len(words) >= 2 and len(words[-1]) >= 4 and is_rare(words[-1], 5000):
                forms[words[-1]] = None
    return list(forms)



_KIND_ORDER = ("date", "title", "name", "number", "answer", "proper", "word", "phrase")


def _surface(fact: str, sentence: str) -> str | None:
    """The words of ``fact`` (normalised) as the sentence writes them, or None."""
    folded = fold(sentence)
    pattern = r"(?<!\w)" + r"\W+".join(re.escape(w) for w in fact.split()) + r"(?!\w)"
    m = re.search(pattern, folded)
    if m is None or len(folded) != len(sentence):
        return None
    return sentence[m.start() : m.end()]


def cloze_facts(docs: ForgetDocuments, *, subjects: Sequence[str] = ()) -> list[tuple[int, str, str]]:
    """One ``(document index, sentence, fact)`` per document of a text set: its most specific fact
    (date, title, name, number, then rare words) as the sentence writes it, for cloze probes."""
    forms = subject_forms([*subjects, *mine_subjects(list(docs.documents))])
    out: list[tuple[int, str, str]] = []
    for i, doc in enumerate(docs.documents):
        best: tuple[float, int, int, str, str] | None = None
        for sentence in re.split(r"(?<=[.!?])\s+", doc):
            for f in mine_facts(sentence, subjects=forms):
                surface = _surface(f.text, sentence)
                if surface is None:
                    continue
                key = (f.weight, -_KIND_ORDER.index(f.kind), len(f.text), sentence, surface)
                if best is None or key[:3] > best[:3]:
                    best = key
        if best is not None:
            out.append((i, best[3], best[4]))
    return out
