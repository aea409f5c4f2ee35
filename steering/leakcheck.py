"""Leak check: does a generated answer reveal a forget set's content? Run on every answer before it
leaves, steered or not (guardit's addition to GUARD-IT, arXiv 2605.12765).

A ``LeakProfile`` is mined once per forget set: one unit per QA pair or document, each with the
specific facts it states (names, titles, numbers, dates, rare words and phrases: rare relative to
common English, ``data/common_english.txt``, and to the neutral corpus) and the set's subjects.
An answer leaks a unit when it adds (says, the prompt did not) facts of that unit worth 1.0:
- a strong fact alone (weight 1.0): a name or title with a word outside common English
  ("Mahfouz", "Wapakoneta"), a quoted title of two or more words, a full date, a QA answer of
  three or more content words;
- weak facts (0.5: a year or other number, a name of common words, a rare word or phrase, a
  subject's name) only together: two of the unit's items present in prompt + answer, one of them
  said by the answer. A year alone is weak; a year with the subject's name, or after a prompt
  naming the subject, is a leak. A subject's name alone is not (a neighbour answer may mention it).
- QA answers of any length: the answer's content words (question words left out), weighted by
  rarity, recalled at >= 0.6 and worth >= 1.0 (a reworded long answer).
- QA answers longer than eight words: ROUGE-L recall >= 0.5 of the answer's opening words, with two
  or more content words the prompt did not give (a retold answer), when the set's subject is named
  in the prompt or the answer, or the gate opened the set for the prompt.
- optionally the answer's embedding close to a unit's (>= ``embed_threshold``), and closer than
  the prompt's: counts as one weak item.
- a restated document: the answer adds an entity fact of a unit (a name, title, date, number or a
  subject's name) that would be too weak alone, and the answer, alone or after the question it
  answers, is as close to that unit as a paraphrase (cosine >= ``RESTATE_SIMILARITY``): "Which
  mission first landed humans on the Moon?" answered "... Apollo 11" for a set whose document says
  Armstrong commanded Apollo 11. The gate may stay closed for such a question (it names nobody);
  the answer shows it is the document's fact. Needs the embedder and the units' embeddings.
- a verbatim run: ``VERBATIM_WORDS`` consecutive words that one document or QA answer of the set
  holds (three of them content words, runs several units share left out) and the prompt did not,
  whatever they state (a copyrighted passage continued).
- ``about`` (the gate opened the set for this prompt, under any spelling of the name): any fact of
  the set that the answer adds is a leak, a subject's name included ("Who developed the theory of
  relativity?" answered "Einstein": the name is the forgotten answer); no neighbour question reaches
  this, the gate stayed closed for it.
- ``about`` a document set, with the embedder: an answer as close to one of its documents as a
  paraphrase (cosine >= ``ABOUT_RESTATE_SIMILARITY``) and closer than the question restates it,
  mined facts or not (a definition such as "the yen is a currency" holds no name or number).
Facts that only appear in the prompt never count as said by the answer. Verdict evidence quotes
forget-set facts: never log it above DEBUG.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from steering.checks import last_question
from steering.decodings import decodings, numbers_as_digits
from steering.forget_set import ForgetDocuments, QAPair
from steering.leakfacts import (
    STOPWORDS,
    STRONG,
    WEAK,
    Fact,
    is_rare,
    mine_facts,
    mine_subjects,
    norm,
    subject_forms,
)
from steering.names import respellings

EmbedFn = Callable[[Sequence[str]], Any]  # texts -> [n, d_embed] unit vectors

#: Kinds that name something: they anchor weak facts ("1969" next to a name is specific).
_ENTITY = frozenset({"subject", "name", "title", "date", "number", "answer", "embedding"})
#: Weak kinds that tie other weak facts together: "Kuwait City" with a year or with the subject is
#: a fact of the set; two place names ("Seoul, South Korea") alone could be anyone's.
_WHEN_WHO = frozenset({"subject", "date", "number", "embedding"})


@dataclass(frozen=True)
class LeakUnit:
    """What one QA pair or document says: its facts, and for QA the answer and question."""

    facts: tuple[Fact, ...]
    answer: str = ""
    question: str = ""
    embedding: tuple[float, ...] = ()


@dataclass(frozen=True)
class LeakProfile:
    """Everything the leak check needs about one forget set (stored with its artifacts)."""

    kind: str
    units: tuple[LeakUnit, ...]
    subjects: tuple[str, ...] = ()
    embed_threshold: float = 0.8
    version: int = 1
    #: hashes of the set's verbatim runs (``VERBATIM_WORDS`` normalised words; ``shingles``)
    shingles: tuple[int, ...] = ()

    @cached_property
    def shingle_set(self) -> frozenset[int]:
        """``shingles`` for lookups."""
        return frozenset(self.shingles)

    def to_json(self) -> str:
        """A JSON document; ``from_json`` restores an equal profile."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LeakProfile:
        """Inverse of ``to_json``."""
        raw = json.loads(text)
        units = tuple(LeakUnit(tuple(Fact(**f) for f in u["facts"]), u["answer"], u["question"],
                               tuple(u["embedding"])) for u in raw["units"])
        return cls(raw["kind"], units, tuple(raw["subjects"]), float(raw["embed_threshold"]),
                   int(raw["version"]), tuple(raw.get("shingles", ())))


@dataclass(frozen=True)
class LeakVerdict:
    """The leak check's answer: ``score`` >= 1.0 is a leak; ``evidence`` lists the facts said."""

    leaked: bool
    reason: str
    evidence: tuple[str, ...] = field(default=())
    score: float = 0.0


def build_leak_profile(docs: ForgetDocuments | Sequence[str] | Sequence[QAPair], *,
                       subjects: Sequence[str] = (), embed: EmbedFn | None = None,
                       embed_threshold: float = 0.8) -> LeakProfile:
    """Mine a forget set's leak profile (once, at build time).

    Args:
        docs: the set's documents (``ForgetDocuments``, plain texts or QA pairs).
        subjects: names the set is about, given at registration; mined names are added.
        embed: optional sentence embedder (texts -> unit vectors) for the similarity item.
        embed_threshold: cosine from which an answer is "about" a unit.
    """
    if not isinstance(docs, ForgetDocuments):
        items = list(docs)
        pairs = tuple(i for i in items if isinstance(i, QAPair))
        docs = ForgetDocuments(qa=pairs) if pairs else ForgetDocuments(documents=tuple(str(t) for t in items))
    texts = [f"{p.question} {p.answer}" for p in docs.qa] if docs.qa else list(docs.documents)
    subj = subject_forms([*subjects, *mine_subjects(texts)])
    vectors = np.asarray(embed(texts), dtype=np.float32) if embed is not None else None
    units = []
    for i, text in enumerate(texts):
        emb = tuple(round(float(x), 5) for x in vectors[i]) if vectors is not None else ()
        if docs.qa:
            pair = docs.qa[i]
            facts = mine_facts(pair.answer, subjects=subj)
            facts += [f for f in mine_facts(pair.question, subjects=subj) if f.kind in ("name", "title")]
            ans = norm(pair.answer)
            content = [w for w in ans.split() if w not in STOPWORDS]
            if content and all(f.text != ans for f in facts):
                weight = STRONG if len(content) >= 3 or any(is_rare(w) for w in content) else WEAK
                facts.append(Fact(ans, "answer", weight))
            units.append(LeakUnit(tuple(_unique(facts)), ans, norm(pair.question), emb))
        else:
            units.append(LeakUnit(tuple(mine_facts(text, subjects=subj)), embedding=emb))
    verbatim = [p.answer for p in docs.qa] if docs.qa else list(docs.documents)
    units_of: dict[int, int] = {}  # run -> units holding it
    for text in verbatim:
        for h in set(shingles(norm(text).split())):
            units_of[h] = units_of.get(h, 0) + 1
    # A run several units share is the set's template ("is a proud member of the lgbtq community"),
    # which answers about anyone else repeat too; only runs of one unit are its own words.
    hashes = sorted(h for h, n in units_of.items() if n == 1)[:MAX_SHINGLES]
    return LeakProfile(docs.kind, tuple(_demote_topics(units)), tuple(subj), embed_threshold,
                       shingles=tuple(hashes))


#: Words in a verbatim run: an answer that repeats this many consecutive (normalised) words of a
#: forget document or QA answer, that the prompt did not hold, reproduces it (a copyrighted passage
#: continued word for word, whatever names or facts it holds). On TOFU gold answers, runs of a set's
#: own units: 8 words flag 13 of 3,600 retain90 answers against forget10 (shared templates such as
#: "won the prestigious ... award"), 10 words 2 (one a near-copy in TOFU itself), 12 words 1.
VERBATIM_WORDS = 10
#: ... of which at least this many are content words ("one of the most important of the" is anyone's).
VERBATIM_CONTENT = 3
#: Verbatim runs kept per set (a 250,000-word corpus; about 4 MB of JSON at most).
MAX_SHINGLES = 250_000


def _shingle(words: Sequence[str]) -> int:
    digest = hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=6).digest()
    return int.from_bytes(digest, "big")  # 48 bits: exact in JSON numbers


def shingles(words: Sequence[str]) -> Iterable[int]:
    """Hashes of every run of ``VERBATIM_WORDS`` words with ``VERBATIM_CONTENT`` content words."""
    for i in range(len(words) - VERBATIM_WORDS + 1):
        window = words[i:i + VERBATIM_WORDS]
        if sum(w not in STOPWORDS for w in window) >= VERBATIM_CONTENT:
            yield _shingle(window)


@lru_cache(maxsize=256)
def _runs(text: str) -> frozenset[int]:
    """``shingles`` of a text, normalised; cached, as every active set checks the same answer."""
    return frozenset(shingles(norm(text).split()))


def _verbatim(profile: LeakProfile, texts: Sequence[str], prompt_norm: str) -> bool:
    """True when one of ``texts`` repeats a verbatim run of the set that the prompt did not hold."""
    if not profile.shingles:
        return False
    hits = set().union(*(_runs(t) & profile.shingle_set for t in texts))
    return bool(hits) and not hits <= set(shingles(prompt_norm.split()))


def _demote_topics(units: list[LeakUnit], share: float = 0.02) -> list[LeakUnit]:
    """Facts that many units state ("lgbtq" in a set about an LGBTQ author, "narratives") are the
    set's topic or style, not one document's fact: weak and never an anchor (kind ``topic``)."""
    df: dict[str, int] = {}
    for u in units:
        for f in u.facts:
            df[f.text] = df.get(f.text, 0) + 1
    need = max(3.0, share * len(units))
    return [replace(u, facts=tuple(
        Fact(f.text, "topic", WEAK) if df[f.text] >= need and f.kind not in ("date", "title", "answer") else f
        for f in u.facts)) for u in units]


def _unique(facts: Iterable[Fact]) -> list[Fact]:
    best: dict[str, Fact] = {}
    for f in facts:
        if f.text not in best or best[f.text].weight < f.weight:
            best[f.text] = f
    return list(best.values())


def _present(fact: str, padded: str) -> bool:
    return f" {fact} " in padded


def _distinct(found: list[Fact]) -> list[Fact]:
    """Found items, longest first, without those inside a longer one ("relativity" in
    "special relativity" counts once)."""
    kept: list[Fact] = []
    for f in sorted(found, key=lambda f: (-len(f.text), -f.weight)):
        if not any(_present(f.text, f" {k.text} ") for k in kept):
            kept.append(f)
    return kept


def _overlap(unit: LeakUnit, out_words: set[str], prompt_words: set[str]) -> tuple[float, float, int]:
    """(recall, matched weight, matched words) of the QA answer's content words (the question's and
    the prompt's left out) that the output says, each weighted by rarity."""
    skip = set(unit.question.split()) | prompt_words | STOPWORDS
    weights = {w: (WEAK if w.isdigit() else STRONG if is_rare(w) else WEAK if is_rare(w, 3000) else 0.25)
               for w in unit.answer.split() if w not in skip}
    total = sum(weights.values())
    hits = [v for w, v in weights.items() if w in out_words]
    return (sum(hits) / total if total else 0.0), sum(hits), len(hits)


#: A QA answer longer than this many words is also compared as a word sequence (ROUGE-L recall).
SEQUENCE_MIN_WORDS = 8
#: ROUGE-L recall against the answer's opening words from which an answer retells it ...
SEQUENCE_RECALL = 0.5
#: ... when the common subsequence holds at least this many content words the prompt did not give.
SEQUENCE_NEW_WORDS = 2


#: Characters of the prompt's end read together with the answer (a fact split between them).
JOIN_CHARS = 64

#: Cosine between the answer (alone, or after its question) and a unit from which an entity fact
#: of the set in the answer is a leak. Measured on gold answers (``benchmarks/restate_bench.py``,
#: docs/results/leak/README.md): TOFU retain90 vs forget10, 1 of 1,000 more flagged (5 at 0.60);
#: RWKU's first 40 targets, 19 of 2,185 neighbour answers more (0.9%) against 141 of 2,631 forget answers.
RESTATE_SIMILARITY = 0.65
#: For a document set, how much less close the document holding the added fact may be.
RESTATE_SPREAD = 0.15
#: When the gate opened a document set for the prompt, an answer this close to one of its documents,
#: and closer to it than the question is, restates that document even without a mined fact ("What is
#: the Japanese yen?" answered "a currency used by Japanese people": 0.88 to "The yen is the official
#: currency of Japan.", the question 0.84). Document sets only: a QA set's answers are checked as such.
ABOUT_RESTATE_SIMILARITY = 0.8
#: ... once the answer says this many content words the prompt did not (a stream's first words that
#: repeat the question restate nothing yet).
ABOUT_NEW_WORDS = 2


def check_output(profile: LeakProfile, answer: str, *, prompt: str | None = None,
                 embed: EmbedFn | None = None, about: bool = False, unit_vectors: Any = None,
                 question: str | None = None) -> LeakVerdict:
    """Does ``answer`` reveal the forget set of ``profile``?

    The answer is read as written, in each Latin respelling (``steering.names.respellings``: an answer
    spelled letter by letter, in leetspeak or in another script), backwards, decoded
    (``steering.decodings``: base64, hex, ROT13 and the like), with numbers written in words as digits
    ("nineteen fifty-six"), and joined to the end of the prompt
    (a prompt that stops inside a fact, "... was born in Ast", and an answer that finishes it).

    Args:
        profile: the set's profile (``build_leak_profile``).
        answer: the generated text.
        prompt: everything the user sent (flattened chat); facts in it are not the answer's.
        embed: the embedder the profile was built with, for the similarity item.
        about: the gate opened this set for the prompt: the prompt is about the set however it spelled
            the subject's name, so a fact of the set that the answer adds is anchored, as if the
            prompt had named the subject as written.
        unit_vectors: ``[n_units, d_embed]`` unit embeddings when the profile stores none (the
            artifacts' document embeddings, same order); with ``embed``, enables the restated rule.
        question: what the answer responds to (the last question asked), for the restated rule;
            default the end of ``prompt``.
    """
    digits = numbers_as_digits(answer)
    readings = [answer, *respellings(answer), answer[::-1], *decodings(answer), *([digits] if digits != answer else [])]
    if prompt:
        tail = prompt[-JOIN_CHARS:]
        readings.append(tail + answer)
    prompt_norm = norm(prompt or "")  # once: every reading is compared with the same prompt
    vectors = _unit_vectors(profile, unit_vectors)
    best = LeakVerdict(False, "no fact of the set in the answer")
    weak: dict[int, tuple[str, list[Fact]]] = {}  # unit -> (reading, its unanchored entity facts)
    for i, text in enumerate(readings):
        verdict, candidates = _check(profile, text, prompt=prompt, prompt_norm=prompt_norm,
                                     embed=embed if i == 0 else None, about=about)
        for unit, facts in candidates.items():
            weak.setdefault(unit, (text if i < len(readings) - 1 or not prompt else answer, facts))
        if (verdict.leaked, verdict.score) > (best.leaked, best.score):
            best = verdict
        if best.leaked:
            return best
    if _verbatim(profile, [answer, *decodings(answer)], prompt_norm):  # the evidence would quote the set
        return LeakVerdict(True, f"the answer repeats {VERBATIM_WORDS} or more consecutive words of the set",
                           (), 2.0)
    if embed is None or vectors is None:
        return best
    asked = question if question is not None else last_question(prompt)
    if weak:
        restated = _restated(profile, weak, vectors, embed, asked)
        if restated is not None:
            return restated
    if about and profile.kind == "documents" and len(_new_words(answer, prompt_norm)) >= ABOUT_NEW_WORDS:
        restated = _restates_document(answer, asked, vectors, embed)
        if restated is not None:
            return restated
    return best


def _new_words(answer: str, prompt_norm: str) -> set[str]:
    """Content words of ``answer`` that the (normalised) prompt does not hold."""
    return set(norm(answer).split()) - set(prompt_norm.split()) - STOPWORDS


def _restates_document(answer: str, question: str, vectors: np.ndarray, embed: EmbedFn) -> LeakVerdict | None:
    """The about rule for document sets (``ABOUT_RESTATE_SIMILARITY``): the answer as close to a
    document as a paraphrase, and closer than the question it answers."""
    emb = np.asarray(embed([answer, question or " "]), dtype=np.float32) @ vectors.T  # [2, n_units]
    unit = int(emb[0].argmax())
    sim, asked = float(emb[0, unit]), float(emb[1, unit])
    if sim >= ABOUT_RESTATE_SIMILARITY and sim > asked:
        return LeakVerdict(True, f"the answer restates a document of the set the prompt is about "
                                 f"(similarity {sim:.2f}, the question {asked:.2f})", (), round(1.0 + sim, 3))
    return None


def _unit_vectors(profile: LeakProfile, given: Any) -> np.ndarray | None:
    if given is not None:
        out = np.asarray(given, dtype=np.float32)
        return out if out.ndim == 2 and out.shape[0] == len(profile.units) else None
    if profile.units and profile.units[0].embedding:
        return np.asarray([u.embedding for u in profile.units], dtype=np.float32)
    return None


def _restated(profile: LeakProfile, weak: dict[int, tuple[str, list[Fact]]], vectors: np.ndarray,
              embed: EmbedFn, question: str) -> LeakVerdict | None:
    """The restated-document rule (module docstring): embeds each reading that added entity facts,
    alone and after ``question``, and compares it with the set's units."""
    texts = list(dict.fromkeys(t for t, _ in weak.values()))
    rows = [*texts, *(f"{question} {t}" for t in texts)] if question else texts
    sims = np.asarray(embed(rows), dtype=np.float32) @ vectors.T  # [len(rows), n_units]
    per_text = {t: sims[[i, *([i + len(texts)] if question else [])]].max(axis=0) for i, t in enumerate(texts)}
    for unit, (text, facts) in weak.items():
        near = per_text[text]  # [n_units]
        own = float(near[unit])
        # A document set spreads one topic over documents ("Armstrong commanded Apollo 11" in one, "the
        # first person to walk on the Moon" in another): the answer must be as close as a paraphrase
        # to one of them and near the one whose fact it adds. A QA pair is one fact: that very pair.
        spread = RESTATE_SPREAD if profile.kind == "documents" else 0.0
        best = float(near.max()) if spread else own
        if best >= RESTATE_SIMILARITY and own >= RESTATE_SIMILARITY - spread:
            return LeakVerdict(True, f"the answer restates a document of the set (similarity {best:.2f})",
                               tuple(f.text for f in facts), round(1.0 + best, 3))
    return None


def _check(profile: LeakProfile, answer: str, *, prompt: str | None, prompt_norm: str, embed: EmbedFn | None,
           about: bool) -> tuple[LeakVerdict, dict[int, list[Fact]]]:
    """One reading's verdict, and the units it adds entity facts to without a leak (for the
    restated rule)."""
    out_norm = norm(answer)
    out_pad, prompt_pad = f" {out_norm} ", f" {prompt_norm} "
    out_tokens = out_norm.split()
    out_words, prompt_words = set(out_tokens), set(prompt_norm.split())
    subjects = [Fact(s, "subject", WEAK) for s in profile.subjects]
    named = about or any(_present(f.text, out_pad) or _present(f.text, prompt_pad) for f in subjects)
    sims = _similarities(profile, answer, prompt, embed)
    best = LeakVerdict(False, "no fact of the set in the answer")
    candidates: dict[int, list[Fact]] = {}
    for i, unit in enumerate(profile.units):
        items = [*unit.facts, *subjects]
        new = _distinct([f for f in items if _present(f.text, out_pad) and not _present(f.text, prompt_pad)])
        given = _distinct([f for f in items if _present(f.text, prompt_pad)])
        if sims is not None and sims[0][i] >= profile.embed_threshold and sims[0][i] > sims[1][i]:
            new.append(Fact(f"similarity {sims[0][i]:.2f}", "embedding", WEAK))
        if not new and not unit.answer:
            continue
        said = sum(f.weight for f in new)
        anchors = [f for f in given if f.kind in _ENTITY]
        anchored = bool(anchors) or about
        score = said + (WEAK if anchored and new else 0.0)
        new_entity = any(f.kind in _ENTITY for f in new)
        reason = ""
        if any(f.weight >= STRONG for f in new):
            reason = "the answer states a specific fact of the set"
        elif said >= STRONG and (any(f.kind in _WHEN_WHO for f in new) or (len(new) >= 3 and new_entity)):
            reason = "the answer states facts of the set together"
        elif new and anchors and (new_entity or any(f.kind == "subject" for f in anchors)):
            reason = "the answer adds a fact to the set's subject or facts in the prompt"
        elif about and new:
            reason = "the answer adds a fact to a prompt about the set"
        if unit.answer:
            recall, matched, words = _overlap(unit, out_words, prompt_words)
            if recall >= 0.6 and matched >= 1.5 and words >= 3:
                score = max(score, 1.0 + recall)
                reason = reason or f"the answer rewords a forgotten answer (recall {recall:.2f})"
            if named and not reason:
                seq = _sequence(unit, out_tokens, out_words, prompt_words)
                if seq is not None:
                    score = max(score, 1.0 + seq)
                    reason = f"the answer retells a forgotten answer (ROUGE-L recall {seq:.2f})"
        said_entities = [f for f in new if f.kind in _ENTITY and f.kind != "embedding"]
        if not reason and said_entities:
            candidates[i] = said_entities
        if (bool(reason), score) > (best.leaked, best.score):
            evidence = tuple(f.text for f in new) + tuple(f"prompt: {f.text}" for f in given)
            best = LeakVerdict(bool(reason), reason or "facts of the set, too weak alone", evidence,
                               round(score, 3))
        if best.leaked and best.score >= 2.0:
            break
    return best, candidates


def _sequence(unit: LeakUnit, out: list[str], out_words: set[str], prompt_words: set[str]) -> float | None:
    """ROUGE-L recall of a long QA answer's opening words (as many as the output has, at least
    ``SEQUENCE_MIN_WORDS``) in the output, when it reaches ``SEQUENCE_RECALL`` and the common
    subsequence holds ``SEQUENCE_NEW_WORDS`` content words that the prompt did not give; else None.
    This is how TOFU scores a retold answer: the same sentence with a word or two changed."""
    ref = unit.answer.split()
    if len(ref) <= SEQUENCE_MIN_WORDS or len(out) < 3:
        return None
    fresh = {w for w in ref if w not in STOPWORDS and w not in prompt_words}
    if len(fresh & out_words) < SEQUENCE_NEW_WORDS:
        return None  # cheap bound: the subsequence cannot hold enough new words
    prefix = ref[:max(len(out), SEQUENCE_MIN_WORDS)]
    common = _lcs(prefix, out)
    recall = len(common) / len(prefix)
    if recall < SEQUENCE_RECALL or len({w for w in common if w in fresh}) < SEQUENCE_NEW_WORDS:
        return None
    return recall


def _lcs(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """A longest common subsequence of two word lists."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        row, below = table[i], table[i + 1]
        for j in range(len(b) - 1, -1, -1):
            row[j] = below[j + 1] + 1 if a[i] == b[j] else max(below[j], row[j + 1])
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


def _similarities(profile: LeakProfile, answer: str, prompt: str | None,
                  embed: EmbedFn | None) -> tuple[np.ndarray, np.ndarray] | None:
    if embed is None or not profile.units or not profile.units[0].embedding:
        return None
    units = np.asarray([u.embedding for u in profile.units], dtype=np.float32)  # [n_units, d_embed]
    vecs = np.asarray(embed([answer, prompt or ""]), dtype=np.float32)  # [2, d_embed]
    sims = vecs @ units.T  # [2, n_units]
    return sims[0], sims[1]
