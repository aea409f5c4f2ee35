"""Names mined from forget documents, for the hybrid gate (our addition to GUARD-IT, METHOD.md).

A forget set about a person or a work names it again and again; a prompt that mentions that name is
about the forget set even when its wording is far from every document (paraphrases, role play, other
languages). Names are runs of capitalised words; the ones frequent enough in the set are kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import regex
from wordfreq import zipf_frequency

from steering.names import (
    abjad,
    any_fuzzy,
    distinctive,
    fuzzy_spans,
    name_parts,
    respellings,
    sounds,
    split_names,
    syllabic_names,
    words,
)
from steering.people import PersonCues, person_cues

_NAME = re.compile(
    r"\b([A-Z][\w'\-.]*(?:\s+(?:(?:al|el|de|da|di|du|van|von|der|den|bin|ibn|del|la|le|of)\s+)?[A-Z][\w'\-.]*)+)")
#: Combining marks, removed after NFKD: accents, and the marks an attacker stacks on letters.
_MARKS = regex.compile(r"\p{M}")
#: Capitalised words that start sentences or questions rather than names.
_LEADING = frozenset("""a an the this that these those what who whom whose which when where why how is are was were
did does do has have had can could would should will may might in on at of for from by with about as and or but
if then so to please tell describe explain name give list one two three""".split())


def _clean(name: str) -> str:
    name = re.split(r"(?:'s|’s)\b", name, maxsplit=1)[0]  # "Nikolai Abilov's LGBTQ" -> "Nikolai Abilov"
    words = name.split()
    while words and words[0].lower() in _LEADING:
        words = words[1:]
    text = " ".join(words)
    return re.sub(r"(?:'s|’s|')$", "", text).strip(" .-")


@lru_cache(maxsize=256)
def fold(text: str) -> str:
    """Lower-case, accents removed: names match across casing and diacritics."""
    if text.isascii():
        return text.lower()
    return str(_MARKS.sub("", unicodedata.normalize("NFKD", text))).lower()


def mine_entities(texts: Sequence[str], *, min_count: int = 2, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Multi-word names that occur in at least ``min_count`` documents.

    Args:
        texts: forget documents.
        min_count: documents a name must occur in (capped at the number of documents); callers
            scale it with the typical cluster size so passing mentions of places are left out.
        extra: names given explicitly (e.g. the forget set's name), always kept.

    Returns:
        Names, most frequent first, folded (see ``fold``).
    """
    counts: Counter[str] = Counter()
    for text in texts:
        found = {_clean(m) for m in _NAME.findall(text)}
        counts.update(fold(n) for n in found if len(n.split()) >= 2)
    need = max(1, min(min_count, len(texts)))
    kept = [name for name, c in counts.most_common() if c >= need]
    for name in extra:
        folded = fold(_clean(name))
        if len(folded.split()) >= 2 and folded not in kept:
            kept.append(folded)
    return tuple(kept)


def _mentions_exactly(text: str, entities: Sequence[str]) -> bool:
    """True when ``text`` contains one of the names as whole words (case and accents ignored)."""
    if not entities:
        return False
    folded = fold(text)
    return any(name in folded and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", folded) for name in entities)


def mentions(text: str, entities: Sequence[str]) -> bool:
    """True when ``text`` names one of the entities, as written or respelled (look-alike letters,
    leetspeak, spacing, other scripts) or misspelled within bounds (``steering.names``)."""
    if not entities:
        return False
    if _mentions_exactly(text, entities):
        return True
    readings = respellings(text)
    return (any(_mentions_exactly(r, entities) for r in readings) or any_fuzzy([text], entities)
            or split_names([text, *readings], entities) or syllabic_names([text], entities))


# -- the subject of a one-person forget set ------------------------------------------------------
#: One word of a person's name: capitalised, no inner dots ("English.When" is two sentences), a
#: trailing dot only on an initial or a short title ("J.", "Jr.", "St."), so a run ends at a full stop.
_PWORD = r"(?:(?:[A-Z]\.){1,3}|(?:Jr|Sr|St|Dr|Mr|Mrs|Ms|Mt)\.|[A-Z][\w'\-]*[\w])"
_PERSON_BODY = (r"(?:" + _PWORD + r"(?:\s+(?:(?:al|el|de|da|di|du|van|von|der|den|bin|ibn|del|la|le)\s+)?"
                + _PWORD + r")+)")
_PERSON = re.compile(r"(?<![\w.])(" + _PERSON_BODY + r")")
#: A stage name that starts with a number ("50 Cent", "2 Chainz"): only taken after an alias cue.
_NUMBERED = r"\d+\s+[A-Z][\w'\-]*"
#: Phrases that introduce another name of the subject ("born Lee Jun-fan", "known professionally as",
#: "better known by her pen name J. K. Rowling").
_ALIAS_CUE = re.compile(
    r"(?:\bborn|\bnée|\bknown (?:[a-z]+ ){0,2}as|\balso(?: known as| called)?|\bnicknamed|\bbetter known as"
    r"|\b(?:pen|ring|stage|professional) name|\bknown by (?:his|her|their) (?:pen |ring |stage )?name)"
    r"\s+\"?(" + _PERSON_BODY + r"|" + _NUMBERED + r"|[A-Z][\w'\-]+)")
_LEAD = re.compile(r"^\W*(" + _PERSON_BODY + r"|[A-Z][\w'\-]+)\s*(?:\(|,)")
#: A name alone at the start of the lead's first parenthesis: "Prince Harry (Henry Charles Albert David; ...".
_PAREN = re.compile(r"^[^(]{0,80}\(\s*(" + _PERSON_BODY + r")\s*[;)]")
#: Name suffixes that are not surnames.
_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})
_MONTHS = frozenset("""january february march april may june july august september october november december
c. circa""".split())


@dataclass(frozen=True)
class Subject:
    """Who a one-person forget set is about, as the ``subject`` gate recognises them in a prompt.

    Attributes:
        names: full names and aliases, folded (``fold``); any of them in a prompt names the subject.
        surnames: the subject's surname(s), folded; a capitalised surname alone also names them
            unless the word before it is a capitalised word that is not one of ``given``
            ("Jamie Lee Curtis" does not name Tony Curtis).
        given: every other word of the subject's names, folded.
    """

    names: tuple[str, ...] = ()
    surnames: tuple[str, ...] = ()
    given: tuple[str, ...] = ()

    def to_json(self) -> list[list[str]]:
        """Three lists, for storage with the artifacts."""
        return [list(self.names), list(self.surnames), list(self.given)]

    @classmethod
    def from_json(cls, value: Sequence[Sequence[str]]) -> Subject:
        """Inverse of ``to_json``."""
        names, surnames, given = value
        return cls(tuple(names), tuple(surnames), tuple(given))


def _split_name(name: str) -> tuple[list[str], str | None]:
    """Words of a folded name and its surname (the last word that is not a suffix)."""
    words = name.split()
    core = [w for w in words if w.strip(",") not in _SUFFIXES]
    return words, (core[-1] if core else None)


def _sentence_start(text: str, pos: int) -> bool:
    """True when ``pos`` starts ``text`` or a sentence in it."""
    return re.search(r"(?:^|[.!?][\"')\]]?\s+)[\"'(\[]?$", text[:pos]) is not None


def _common_words(texts: Sequence[str]) -> set[str]:
    """Words the documents also write in lower case (folded)."""
    return {fold(w) for text in texts for w in re.findall(r"(?<![\w'\-])[a-z][\w'\-]*", text)}


def _person_runs(text: str, common: set[str]) -> Iterator[str]:
    """The 2-5 word capitalised names of ``text`` in order, folded; a capitalised word that opens a
    sentence and that the documents also write in lower case (``common``) is left out."""
    for m in _PERSON.finditer(text):
        words = _clean(m.group(1)).split()
        if words and _sentence_start(text, m.start()) and fold(words[0]) in common:
            words = words[1:]
        if 2 <= len(words) <= 5:
            yield fold(" ".join(words))


def first_person(text: str, common: set[str]) -> str | None:
    """The first name ``person_names`` reads in ``text`` (with the documents' lower-case words
    ``common``), or None."""
    return next(_person_runs(text, common), None)


def person_names(texts: Sequence[str]) -> Counter[str]:
    """Document frequency of each 2-5 word capitalised name (folded). A capitalised common word that
    opens a sentence is not part of the name ("Although Jackson" is Jackson)."""
    common = _common_words(texts)
    counts: Counter[str] = Counter()
    for text in texts:
        # dict.fromkeys, not a set: ties in most_common keep text order
        counts.update(list(dict.fromkeys(_person_runs(text, common))))
    return counts


def mine_subject(texts: Sequence[str], *, name: str | None = None, lead_docs: int = 5) -> Subject:
    """The subject of documents about one person (or one named thing), with their aliases.

    The primary name is ``name`` (e.g. the forget set's name; "Prince Harry, Duke of Sussex" gives
    two names), else the name opening an encyclopaedia lead among the first ``lead_docs`` documents
    ("Travis Michael Kelce (born ...") when its surname is among the documents' most frequent
    capitalised words, else the most frequent multi-word name whose last word is the most frequent
    capitalised word. Aliases: names that open one of the first ``lead_docs`` documents right before
    "(" or "," when that document also names the subject, names after "born", "known as",
    "pen name" and the like in those leads ("known professionally as 50 Cent"), and mined names
    made of the subject's given name and surname ("Warren Edward Buffett").

    Args:
        texts: forget documents.
        name: the subject's name when the caller knows it.
        lead_docs: documents searched for the primary name and for aliases.
    """
    counts = person_names(texts)
    primary = [fold(_clean(p)) for p in (name or "").split(",") if _clean(p)]
    if not primary:
        primary = _guess_primary(texts, counts, lead_docs)
    if not primary:
        return Subject()
    # Only the first part carries a surname: "Duke of Sussex" is a title, matched in full only.
    words, surname = _split_name(primary[0])
    surnames = [surname] if surname else []
    given = {w for w in words if w != surname and w not in _LEADING}
    names = set(primary)
    for text in texts[:lead_docs]:
        head = text[:400]
        if not any(_mentions_exactly(head, [n]) for n in [*names, *surnames]):
            continue
        found = [fold(_clean(m)) for m in _LEAD.findall(head) + _PAREN.findall(head) + _ALIAS_CUE.findall(head)]
        # A one-word alias ("Hogan" in "née Hogan") is too often someone's surname or a place.
        names.update(f for f in found
                     if len(f.split()) >= 2 and not set(f.split()) & (_MONTHS | _LEADING))
    for mined in counts:
        parts = mined.split()
        if surname in parts and (not given or given & set(parts)) and len(parts) <= 4:
            names.add(mined)
    # The form the documents use most, when the lead gave the birth name ("Cindy Crawford" for
    # "Cynthia Ann Crawford"); only the most frequent, so relatives of that surname stay out.
    usual = [n for n, c in counts.most_common()
             if c >= 2 and n.split()[-1] == surname and len(n.split()) <= 3]
    if usual and name is None:
        names.add(usual[0])
    # A name that contains another one adds nothing ("paris hilton day" holds "paris hilton").
    names = {n for n in names if not any(o != n and re.search(rf"(?<!\w){re.escape(o)}(?!\w)", n) for o in names)}
    for n in names:
        given.update(w for w in n.split() if w not in surnames and w not in _SUFFIXES and w not in _LEADING)
    return Subject(tuple(sorted(names)), tuple(dict.fromkeys(surnames)), tuple(sorted(given)))


#: Another person is a subject of the set when named in at least this share of the documents that
#: name its most named subject (TOFU: two authors 1.0 of each other; RWKU: relatives and
#: co-authors of the target below 0.2).
MIN_SUBJECT_SHARE = 0.6
#: ... or, in a QA set, when they are the first person named in at least this share of its pairs (and
#: two): 20 questions about one author and 3 about another protect both.
MIN_LEAD_SHARE = 0.1


def mine_subjects(texts: Sequence[str], extra_names: Iterable[str] = (), *, name: str | None = None,
                  lead_docs: int = 5, questions: bool = False) -> tuple[Subject, ...]:
    """Every person the documents are about, and the names given explicitly.

    The first subject is ``mine_subject``'s; it, and every other frequent name, is kept only when
    the documents write it as a person's (``steering.people.person_cues``: not a work like "Harry
    Potter", not a place like "Japan"). Another name is a subject when it is named in at least
    ``MIN_SUBJECT_SHARE`` of the documents that name the most named subject (a two-author set
    protects both), or, in a QA set (``questions``), is the first person named in ``MIN_LEAD_SHARE`` of
    its pairs (a set with fewer questions about its second person). Not in document sets: the first
    name of an encyclopaedia passage is as often a work ("Iron Man") or a relative as its subject.
    Names in ``extra_names`` (people or trigger names given at registration) are always subjects, with
    the aliases the documents give them.

    Args:
        texts: forget documents.
        extra_names: names given explicitly, each a subject.
        name: the set's own name, taken as the first subject's name without a person check.
        lead_docs: documents searched for the primary name and aliases (see ``mine_subject``).
        questions: each text is a QA pair, question first (the person it asks about is named first).
    """
    subjects: list[Subject] = []
    first = mine_subject(texts, name=name, lead_docs=lead_docs)
    if first.names and (name is not None or _is_person(texts, first)):
        subjects.append(first)
    top = _named_docs(texts, first) if subjects else 0
    common = _common_words(texts)
    leads = Counter(lead for lead in (first_person(t, common) for t in texts) if lead) if questions else Counter()
    own_docs = max(2.0, MIN_LEAD_SHARE * len(texts))
    found: list[tuple[int, bool, Subject]] = []
    for candidate, docs in person_names(texts).most_common():
        if docs < 2:
            break
        leading = leads[candidate] >= own_docs
        if docs < MIN_SUBJECT_SHARE * top and not leading:
            continue
        known = [s for s in subjects + [f for _, _, f in found] if candidate in s.names
                 or (_split_name(candidate)[1] in s.surnames and _own_given(candidate.split()[0], s))]
        if known or not person_cues(texts, candidate).is_person:
            continue  # the same person under another name, or not a person
        about = [t for t in texts if _mentions_exactly(t, [candidate])]
        person = mine_subject(about, name=candidate, lead_docs=0)  # the leads are the first subject's
        found.append((_named_docs(texts, person), leading, person))
    top = max([top] + [covered for covered, _, _ in found])
    subjects.extend(person for covered, leading, person in found if leading or covered >= MIN_SUBJECT_SHARE * top)
    for given in named_subjects(texts, extra_names, lead_docs=lead_docs):
        if not any(set(given.names) <= set(s.names) for s in subjects):
            subjects.append(given)
    return tuple(subjects)


def named_subjects(texts: Sequence[str], names: Iterable[str], *, lead_docs: int = 5) -> tuple[Subject, ...]:
    """A subject for each name given explicitly, with the aliases the documents give it."""
    found = (mine_subject(texts, name=n, lead_docs=lead_docs) for n in names if n.strip())
    return tuple(s for s in found if s.names)


def _is_person(texts: Sequence[str], subject: Subject) -> bool:
    """True when the documents write the subject's names and surname as a person's."""
    cues = [person_cues(texts, n) for n in dict.fromkeys([*subject.names, *subject.surnames])]
    return PersonCues(sum(c.mentions for c in cues), sum(c.person for c in cues),
                      sum(c.thing for c in cues)).is_person


def _named_docs(texts: Sequence[str], subject: Subject) -> int:
    """Documents that name the subject as written (no respelling: documents are not attacks)."""
    return sum(_names_exactly(t, subject) for t in texts)


def _guess_primary(texts: Sequence[str], counts: Counter[str], lead_docs: int) -> list[str]:
    """The lead's name or the most frequent multi-word name ending in a frequent capitalised word."""
    words: Counter[str] = Counter()
    for text in texts:  # capitalised words inside sentences, possessives cut ("Day-Lewis's")
        capitalised = (fold(re.sub(r"(?:'s|’s|'|’)$", "", w))
                       for w in re.findall(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'’\-]+)", text))
        words.update(list(dict.fromkeys(w for w in capitalised if w not in _LEADING)))
    top = words.most_common(10)
    # Surnames the documents use at least half as often as their most frequent capitalised word.
    ranked = [w for w, c in top if c >= 0.5 * top[0][1]]
    for text in texts[:lead_docs]:
        head = text[:400]
        leads = [fold(_clean(n)) for n in _LEAD.findall(head[:200])]
        if leads and len(leads[0].split()) == 1 and ranked and leads[0] == ranked[0]:
            return leads[:1]  # one name, the documents' most frequent word ("Aristotle (...")
        aliases = [fold(_clean(n)) for n in _PAREN.findall(head) + _ALIAS_CUE.findall(head)]
        # The lead's name or a name it introduces ("born Rachel Meghan Markle", "known professionally
        # as Charlie Sheen"): the one whose surname the documents use most, the lead's on a tie.
        found = [(words[surname], -i, name) for i, name in enumerate(leads + aliases)
                 if len(name.split()) >= 2 and not set(name.split()) & (_MONTHS | _LEADING)
                 and (surname := _split_name(name)[1]) in ranked]
        if found:
            return [max(found)[2]]
    for word, _ in words.most_common(5):
        full = [n for n, _ in counts.most_common() if n.split()[-1] == word]
        if full:
            return [full[0]]
    return [words.most_common(1)[0][0]] if words else []


def _own_given(word: str, subject: Subject) -> bool:
    """True when ``word`` (folded, no trailing dot) can be the subject's own given name before the
    surname: one of ``given``, initials ("J. K. Rowling", "J.K. Rowling"), or a short form that starts
    a given name ("Sam" for Samuel, "Rob" for Robert)."""
    if word in subject.given or f"{word}." in subject.given or re.fullmatch(r"(?:\w\.)*\w", word):
        return True
    return len(word) >= 3 and any(g.startswith(word) for g in subject.given)


def names_subject(text: str, subject: Subject) -> bool:
    """True when ``text`` names the subject: one of its names or its surname alone (see ``Subject``),
    a distinctive given name alone (``given_alone``), as written, written backwards, respelled,
    misspelled within bounds, a full name with its letters split apart, or a full name written in
    Chinese, Japanese or Korean syllables (``steering.names``)."""
    if _names_exactly(text, subject) or given_alone(text, subject):
        return True
    if _names_exactly(text[::-1], subject):  # written backwards ("volibA ialokiN"): a model reads it
        return True
    readings = respellings(text)
    if any(_names_exactly(r, subject) or given_alone(r, subject) for r in readings):
        return True
    return (_names_fuzzily(text, readings, subject)
            or split_names([text, *readings], (*subject.names, *_fuzzy_names(subject)))
            or syllabic_names([text], subject.names))


#: Honorifics written before a surname ("Mr Abilov", "Dr. Al-Kuwaiti"): not another person's given name.
_HONORIFICS = frozenset("""mr mrs ms mx miss dr prof professor sir dame lord lady madam madame mme mlle herr frau
senor senora sr sra don dona monsieur signor signora author writer novelist poet""".split())


def _names_exactly(text: str, subject: Subject) -> bool:
    """One of the subject's names, the first two words of a longer one ("Basil Mahfouz" of Basil
    Mahfouz Al-Kuwaiti) not followed by another surname, or the capitalised surname not after another
    given name (an honorific may stand before it)."""
    if _mentions_exactly(text, subject.names):
        return True
    folded = fold(text)
    if len(folded) != len(text):  # folding changed offsets (rare ligatures): fall back to names only
        return False
    for name in subject.names:
        words = name.split()
        if len(words) < 3:
            continue
        lead = " ".join(words[:2])
        for hit in re.finditer(rf"(?<!\w){re.escape(lead)}(?!\w)", folded):
            after = text[hit.end():]
            if text[hit.start()].isupper() and not re.match(r"\s+[A-Z]", after):
                return True
    for surname in subject.surnames:
        if surname not in folded:
            continue
        for hit in re.finditer(rf"(?<!\w){re.escape(surname)}(?!\w)", folded):
            if not (text[hit.start()].isupper() or text[hit.start()].isdigit()):
                continue
            before = re.search(r"([\w'\-.]+)\s$", text[:hit.start()])
            if before is not None and before.group(1)[:1].isupper():
                prev = fold(before.group(1)).rstrip(".")
                if not _own_given(prev, subject) and prev not in _LEADING and prev not in _HONORIFICS:
                    continue  # another person of that surname ("Jamie Lee Curtis")
            return True
    return False


#: A surname alone is matched with edits only from this many letters ("Abilov" yes, "Cruz" no).
FUZZY_SURNAME_MIN = 6
#: ... and only when the word written is not itself a common English word (Zipf scale, wordfreq):
#: "Grand" is not a misspelling of Grande, "Abilof" is one of Abilov.
FUZZY_WORD_MAX_ZIPF = 3.0


@lru_cache(maxsize=1024)
def _first_names(subject: Subject, common: bool = False) -> tuple[str, ...]:
    """Given names that open one of the subject's multi-word names and are rare enough to name the
    subject alone (``steering.names.distinctive``), or with ``common`` all of them."""
    firsts = {n.split()[0] for n in subject.names if len(n.split()) >= 2}
    return tuple(sorted(w for w in firsts if w in subject.given and w not in _LEADING and len(w) >= 3
                        and (common or distinctive(w))))


def given_alone(text: str, subject: Subject, *, common: bool = False) -> bool:
    """True when ``text`` holds a distinctive given name of the subject (with ``common``, any of its
    given names: "Stephen"), capitalised, alone: next to no capitalised word that is not one of the
    subject's ("Nikolai Gogol", "Aravind Rajeev" are someone else)."""
    firsts = _first_names(subject, common)
    if not firsts:
        return False
    folded = fold(text)
    if len(folded) != len(text):
        return False
    own = {w for n in subject.names for w in n.split()} | set(subject.surnames)
    for first in firsts:
        if first not in folded:
            continue
        for hit in re.finditer(rf"(?<![\w'\-]){re.escape(first)}(?![\w\-])", folded):
            if not text[hit.start()].isupper():
                continue
            after = re.match(r"\s+([\w'\-.]+)", text[hit.end():])
            before = re.search(r"([\w'\-.]+)\s+$", text[max(0, hit.start() - 40):hit.start()])
            if any(m is not None and m.group(1)[:1].isupper() and fold(m.group(1)).rstrip(".") not in own | _LEADING
                   for m in (after, before)):
                continue  # a capitalised word beside it that is not the subject's: someone else
            return True
    return False


@lru_cache(maxsize=1024)
def _fuzzy_names(subject: Subject) -> tuple[str, ...]:
    """Multi-word names to match with edits: the subject's names, and each given name with each surname
    ("Stephen King" for a set that mined "Stephen Edwin King": a misspelling drops the middle name too)."""
    combos = [f"{g} {s}" for g in subject.given for s in subject.surnames
              if len(g) >= 3 and "." not in g and g not in _LEADING]
    return tuple(dict.fromkeys(n for n in (*subject.names, *combos) if len(name_parts(n)) >= 2))


def _names_fuzzily(text: str, readings: Sequence[str], subject: Subject) -> bool:
    """A name of the subject, or its long surname alone, within ``edit_bound`` edits, as written or as
    it sounds (``steering.names.sounds``: "Konfukius" for Confucius)."""
    arabic = abjad(text)  # no capitals, no short vowels
    sources = readings if not text.isascii() else (text, *readings)
    names = _fuzzy_names(subject)
    for reading in sources:
        found = words(reading)
        for heard in ((False,) if arabic else (False, True)):
            spelled = words(sounds(reading)) if heard else found
            say = sounds if heard else (lambda n: n)
            if any(fuzzy_spans(spelled, say(n), vowels=not arabic) for n in names):
                return True
            for surname in subject.surnames:
                if len("".join(name_parts(surname))) < FUZZY_SURNAME_MIN:
                    continue
                for start, end in fuzzy_spans(spelled, say(surname), vowels=not arabic):
                    written = "".join(found.lower[start:end])
                    if zipf_frequency(written, "en") >= FUZZY_WORD_MAX_ZIPF:
                        continue
                    if not arabic:
                        if not found.raw[start][:1].isupper():
                            continue
                        prev = found.lower[start - 1] if found.joined(start) else ""
                        if (prev and found.raw[start - 1][:1].isupper() and not _own_given(prev, subject)
                                and prev not in _LEADING):
                            continue
                    return True
    return False
