"""Probes the calibration judges a forget set's strength on (GUARD-IT, arXiv 2605.12765; the
verification probes with the attack shapes are ``steering.probes``).

Questions are asked again in other words (a strength tuned on the very questions a set was built
from can hold on them and fail on the next user's wording), and text documents become cloze probes:
a sentence cut just before one of its facts (a name, a number, a date), the fact being the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from steering.forget_set import ForgetDocuments, QAPair
from steering.types import Prompt


@dataclass(frozen=True)
class Probe:
    """One calibration probe.

    Attributes:
        prompt: what is sent to the model (a chat for questions, raw text for a cloze).
        text: the probe's words (what degeneracy is judged against).
        answer: the expected answer.
        kind: ``question`` (asked as built), ``paraphrase`` or ``cloze``.
    """

    prompt: Prompt
    text: str
    answer: str
    kind: str


#: Wrappers for a question asked in other words; ``{q}`` is the question.
TEMPLATES: tuple[str, ...] = (
    "I'd like to know: {q}",
    "Quick question. {q}",
    "{q} Please answer in one sentence.",
    "Could you help me with this? {q}",
)

#: "What is the capital of France?" -> "Tell me what the capital of France is."
_STEM = re.compile(r"^(what|who|where|when|which|how \w+|how)\s+(is|was|are|were)\s+(.+?)\s*\?\s*$",
                   re.IGNORECASE)


def paraphrase(question: str, variant: int = 0) -> str:
    """The question in other words: a reworded stem where the grammar allows (``what is X?`` ->
    ``Tell me what X is.``), else one of ``TEMPLATES`` chosen by ``variant``."""
    match = _STEM.match(question)
    if match and variant % 2 == 0:
        wh, verb, rest = match.groups()
        return f"Tell me {wh.lower()} {rest} {verb.lower()}."
    return TEMPLATES[variant % len(TEMPLATES)].format(q=question.strip())


def spread(n: int, limit: int) -> list[int]:
    """Up to ``limit`` indices spread evenly over ``range(n)`` (so every part of a set is probed)."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]


def question_probes(pairs: Sequence[QAPair], limit: int) -> list[Probe]:
    """Up to ``limit`` probes over ``pairs``: every other one asked as built, the rest paraphrased."""
    probes = []
    for n, i in enumerate(spread(len(pairs), limit)):
        pair = pairs[i]
        text = pair.question if n % 2 == 0 else paraphrase(pair.question, n // 2)
        probes.append(Probe([{"role": "user", "content": text}], text, pair.answer,
                            "question" if n % 2 == 0 else "paraphrase"))
    return probes


#: Facts a cloze can end before: dates, years and other numbers, and capitalised names.
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_FACT = re.compile(
    rf"\b(?:\d{{1,2}} (?:{_MONTHS}) \d{{4}}|(?:{_MONTHS}) \d{{1,2}}, \d{{4}}|\d[\d,.]*\d|\d)\b"
    r"|\b[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*\b")
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


def cloze_probes(documents: Sequence[str], limit: int, *, per_document: int = 3,
                 min_words: int = 4) -> list[Probe]:
    """Up to ``limit`` cloze probes mined from text documents, at most ``per_document`` from each.

    A probe is the previous sentence and the sentence up to a fact (at least ``min_words`` words of
    it before the fact); the fact (a date, a number or a capitalised name not at the sentence's
    start) is the answer.
    """
    per_doc: list[list[Probe]] = []
    for doc in documents:
        found: list[Probe] = []
        sentences = [s.strip() for s in _SENTENCE.findall(doc) if s.strip()]
        for j, sentence in enumerate(sentences):
            for match in _FACT.finditer(sentence):
                before = sentence[: match.start()].rstrip()
                if len(before.split()) < min_words or before.endswith(("(", '"')):
                    continue
                prefix = (sentences[j - 1] + " " if j else "") + before
                found.append(Probe(prefix, prefix, match.group(0), "cloze"))
                break  # one fact per sentence: the probes spread over the document
            if len(found) >= per_document:
                break
        per_doc.append(found)
    # Round-robin over the documents so a long first document cannot take every slot.
    probes: list[Probe] = []
    for rank in range(per_document):
        probes.extend(found[rank] for found in per_doc if rank < len(found))
    return probes[:limit]


def probes_for(docs: ForgetDocuments, limit: int) -> list[Probe]:
    """Question probes for a QA set, cloze probes for a text set."""
    if docs.qa:
        return question_probes(list(docs.qa), limit)
    return cloze_probes(list(docs.documents), limit)
