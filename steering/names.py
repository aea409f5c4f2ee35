"""Name matching that survives spelling: look-alike letters, invisible characters, leetspeak, spaced
letters, other scripts and misspellings (used by ``steering.entities.names_subject`` and ``mentions``).

A prompt is checked as written first (the exact match of ``steering.entities``); only when that finds
nothing is it respelled into plain Latin and checked again, then matched with a bounded edit distance.

Respelling, in order:
1. NFKC (full-width and mathematical letters become plain ones) and removal of format characters
   (category Cf: zero-width spaces and joiners, soft hyphens, bidi controls) and Hangul fillers.
2. Two readings of every non-ASCII letter, both checked: its Latin look-alike from the Unicode
   confusables data (UTS #39: Cyrillic "а", Greek "ο" written inside a Latin name), and its
   transliteration (a name written in Cyrillic, Greek, Arabic or CJK script).
3. Markdown emphasis and code marks (``*``, ``~``, backquotes) are dropped ("**Bas**il" reads "Basil").
4. Letters spaced out ("B a s i l", "B-a-s-i-l", "B,a,s,i,l", one per line or between emoji: three
   or more single characters with anything but letters between) are joined; a capital after a small
   letter starts a new word ("B a s i l M a h f o u z"); so it does inside a word ("NikolaiAbilov",
   "#NikolaiAbilov"); hyphenated syllables are joined ("Ni-ko-lai"). A name run together in lower
   case ("nikolaiabilov") is found by the misspelling match below, which also tries single words as
   long as the whole name. A full name split anywhere ("Niko lai Abi lov", "**Niko**lai", quoted
   pieces put together) is found by ``split_names`` on the letters alone.
5. Leetspeak inside words that also hold letters (0 o, 1 i or l, 3 e, 4 a, 5 s, 7 t, @ a, $ s), and
   letters drawn with several characters ("|\\|" n, "/\\" a, "|<" k, "()" o: the forms leetspeak
   guides list); numbers alone ("1956") are left as they are.

Libraries (maintained, no hand-written tables):
- ``confusable-homoglyphs``: the Unicode consortium's confusables.txt as data; we take, for each
  non-ASCII character, its ASCII letter or digit look-alike (1,315 characters). anyascii alone
  would read a Cyrillic "В" inside "Вasil" as "V", not the "B" it imitates.
- ``anyascii``: transliteration of every script to ASCII (Cyrillic "Николай Абилов" -> "Nikolay
  Abilov", Arabic without vowels "باسل" -> "bsl", CJK to pinyin/romaji); fast on ASCII text.
  Arabic script drops short vowels, so names written in it are matched on consonants.
- ``rapidfuzz``: Levenshtein distance with a cutoff in C, so a 4,000-token prompt is scanned for a
  subject's names in about a millisecond.
- ``wordfreq``: how common a word is in English, to decide whether a given name alone is
  distinctive enough to name someone (``distinctive``).

Misspellings: a name matches when its letters (spaces and hyphens ignored) are within
``edit_bound`` edits of a run of words in the prompt that starts with the same letter: none up to
4 letters, 1 up to 10, 2 up to 16, 3 beyond ("Basel Mahfuz Alkuwaity", "Nikolay Abilov"); a name of
two or more words allows 2 from 8 letters ("Hnia Aemen" for Hina Ameen). An edit
is an insertion, deletion, substitution or swap of two neighbouring letters (rapidfuzz's optimal
string alignment: "Stpehen" is one edit from "Stephen"). Both sides are also compared as they sound
(``sounds``: c/k/q, ph/f, kh/h, y/i, doubled letters), which is how transliterations spell a name
letter by letter ("Конфукиус" reads "Konfukius", "Степхен" reads "Stepkhen"). A surname alone is
matched with edits only from 6 letters, and only when the word written is not a common English word
(``steering.entities``).

Chinese, Japanese and Korean write a foreign name syllable by syllable, a dot or a space between its
parts (尼古拉·阿比洛夫, ニコライ・アビロフ, 니콜라이 아빌로프 for Nikolai Abilov); the romanisation
(anyascii: "NiGuLa-ABiLuoFu", "nikorai-abirofu") is far from the name letter by letter but keeps
its consonants up to the contrasts those scripts lack (l/r, b/p/f/v, k/g, t/d). ``syllabic_names``
compares the consonant classes of each part, on syllable edges and with the separators where the
name's parts end. A chance match needs every part's classes in order between separators: in random
text, under one in two thousand texts per name (``tests/steering/test_names.py``).

Not covered: a name written in one of those scripts without a separator between its parts,
Hebrew (its vowel letters transliterate as consonants), and letter-by-letter renderings in another
script that are far from how the name sounds.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import regex
from anyascii import anyascii
from confusable_homoglyphs import utils as confusable_data
from rapidfuzz import process
from rapidfuzz.distance import OSA
from wordfreq import zipf_frequency

#: Format characters, and the Hangul fillers that render as nothing but are letters (category Lo).
_INVISIBLE = regex.compile(r"[\p{Cf}\u115f\u1160\u3164\uffa0]")
#: Symbols (emoji, dingbats): read as a space, so letters separated by emoji are spaced letters.
_SYMBOL = regex.compile(r"\p{So}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_LEET_I = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_L = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
#: Letters drawn with several characters ("|\\|" N, "/\\" A, "|<" K): the forms leetspeak guides list,
#: longest first so "|\\/|" is M before "\\/" is V.
_LEET_DRAWN = (("|\\/|", "m"), ("/\\/\\", "m"), ("|\\|", "n"), ("/\\/", "n"), ("\\/\\/", "w"), ("|_|", "u"),
               ("|-|", "h"), ("]-[", "h"), ("(_,)", "q"), ("/\\", "a"), ("\\/", "v"), ("|<", "k"), ("|{", "k"),
               ("|)", "d"), ("|>", "d"), ("|2", "r"), ("|*", "p"), ("|_", "l"), ("()", "o"), ("><", "x"), ("`/", "y"))
_LEET_DRAWN_RUN = re.compile("|".join(re.escape(a) for a, _ in _LEET_DRAWN))
_LEET_DRAWN_TABLE = dict(_LEET_DRAWN)
#: A word holding a letter and a leet character ("N1k0l4i", "$ergey"); numbers alone are not leet.
_LEET_WORD = re.compile(r"(?<![\w@$])(?!\d+(?:st|nd|rd|th|s|m|k|b|am|pm)?(?![\w@$]))"
                        r"(?=[\w@$]*[A-Za-z])(?=[\w@$]*[0134579@$])[\w@$]+")
#: Three or more single characters, each followed by one to four separators (anything but a letter or
#: digit: spaces, line breaks, punctuation, quotes, symbols).
_SPACED = re.compile(r"(?<![\w@$])(?:[A-Za-z0-9@$](?:[^\w@$]|_){1,4}){2,}[A-Za-z0-9@$](?![\w@$])")
#: Syllables joined by hyphens ("Ni-ko-lai"): three or more parts of at most three letters.
_SYLLABLES = re.compile(r"(?<![\w-])[A-Za-z]{1,3}(?:-[A-Za-z]{1,3}){2,}(?![\w-])")
#: Markdown emphasis and code marks, read as nothing.
_MARKUP = re.compile(r"[*~`]+")
#: A small letter followed by a capital inside a word ("NikolaiAbilov", "#NikolaiAbilov"): a word break.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
_GREEK_STOPS = re.compile(r"(?:μπ|Μπ|ΜΠ|ντ|Ντ|ΝΤ)")
_WORD = re.compile(r"[A-Za-z0-9]+")
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")
#: A given name alone names someone only when rarer than this in English (Zipf scale: 3 is once per
#: million words). "nikolai" 3.1 and "elon" 3.3 are below; "basil" 3.7 (a herb), "john" 5.4 are not.
GIVEN_MAX_ZIPF = 3.5


@lru_cache(maxsize=1)
def _look_alikes() -> dict[int, str]:
    """Non-ASCII character -> the ASCII letter or digit it imitates (Unicode confusables)."""
    table: dict[int, str] = {}
    for char, glyphs in confusable_data.load("confusables.json").items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            c = glyph["c"]
            if len(c) == 1 and c.isascii() and c.isalnum():
                table[ord(char)] = c
                break
    return table


@lru_cache(maxsize=1)
def _letter_symbols() -> dict[int, str]:
    """Symbols that are letters in a frame, by their Unicode names: negative squared and circled
    letters ("NEGATIVE SQUARED LATIN CAPITAL LETTER N", 🅽) and regional indicators (🇳), which NFKC
    leaves as they are and would otherwise read as spaces."""
    table: dict[int, str] = {}
    for cp in range(0x1F100, 0x1F200):
        hit = re.search(r"(?:LATIN CAPITAL LETTER|SYMBOL LETTER) ([A-Z])$", unicodedata.name(chr(cp), ""))
        if hit:
            table[cp] = hit.group(1)
    return table


def _visible(text: str) -> str:
    """NFKC without format characters (zero-width, bidi, soft hyphen) and fillers; letters in a frame
    as letters; other symbols as spaces."""
    text = unicodedata.normalize("NFKC", text)
    if any(0x1F100 <= ord(c) < 0x1F200 for c in text):
        text = text.translate(_letter_symbols())
    return str(_SYMBOL.sub(" ", _INVISIBLE.sub("", text)))


def _ascii(text: str) -> str:
    """anyascii on the non-ASCII runs only (it reads one character at a time)."""
    return _NON_ASCII.sub(lambda m: anyascii(m.group(0)), text)


def _join_spaced(match: re.Match[str]) -> str:
    letters = re.sub(r"[^A-Za-z0-9@$]", "", match.group(0))
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", letters)


def _leet(text: str, table: dict[int, str]) -> str:
    return _LEET_WORD.sub(lambda m: m.group(0).translate(table), text)


@lru_cache(maxsize=256)
def respellings(text: str) -> tuple[str, ...]:
    """Latin readings of ``text`` (case kept) that differ from it; empty when it is plain text."""
    bases = [text]
    if not text.isascii():
        visible = _visible(text)
        table = _look_alikes()
        bases = [_ascii(_NON_ASCII.sub(lambda m: m.group(0).translate(table), visible)), _ascii(visible)]
        if _GREEK.search(visible):  # modern Greek writes b and d as "mp" and "nt" (Μπίλοφ: Bilof)
            bases.append(_ascii(_GREEK_STOPS.sub(lambda m: "b" if m.group(0)[0] in "μΜ" else "d", visible)))
    out: list[str] = []
    for base in dict.fromkeys(bases):
        base = _MARKUP.sub("", base)  # "**Bas**il *Mah*fouz": emphasis marks inside a name
        if any(c in base for c in "|/\\()<>`["):
            base = _LEET_DRAWN_RUN.sub(lambda m: _LEET_DRAWN_TABLE[m.group(0)], base)
        spaced = _SYLLABLES.sub(lambda m: m.group(0).replace("-", ""), _SPACED.sub(_join_spaced, base))
        spaced = _CAMEL.sub(" ", spaced)
        leet = [m.group(0) for m in _LEET_WORD.finditer(spaced)]
        readings = [_leet(spaced, _LEET_I) if leet else spaced]
        if any("1" in w for w in leet):
            readings.append(_leet(spaced, _LEET_L))
        out.extend(r for r in readings if r != text and r not in out)
    return tuple(out)


#: Spellings of one sound, folded to one letter for the phonetic reading (longest first).
_SOUNDS = (("ph", "f"), ("kh", "h"), ("ck", "k"), ("c", "k"), ("q", "k"), ("x", "ks"), ("y", "i"), ("z", "s"),
           ("w", "v"))
_SOUND = re.compile("|".join(a for a, _ in _SOUNDS), re.I)
_DOUBLE = re.compile(r"([A-Za-z])\1+")


@lru_cache(maxsize=1024)
def sounds(text: str) -> str:
    """A phonetic reading of ASCII ``text``: one letter per sound that English and transliterations
    spell several ways ("Konfukius" and "Confucius", "Stepkhen" and "Stephen" read alike), doubled
    letters once. A letter keeps its case, so capitals still mark names."""
    table = dict(_SOUNDS)

    def one(m: re.Match[str]) -> str:
        out = table[m.group(0).lower()]
        return out.upper() if m.group(0)[:1].isupper() else out
    once = _SOUND.sub(one, text)
    return _DOUBLE.sub(r"\1", _SOUND.sub(one, once))  # twice: "pkh" becomes "ph", then "f"


def abjad(text: str) -> bool:
    """True when ``text`` holds Arabic script, whose transliteration lacks the short vowels."""
    return _ARABIC.search(text) is not None


def consonants(text: str) -> str:
    """Letters without vowels and the glides w, y, h (an Arabic-script name is compared on these)."""
    return re.sub(r"[aeiouwyh]", "", text.lower())


def edit_bound(length: int, parts: int = 1) -> int:
    """Edits allowed when matching a name of ``length`` letters: short names stay exact. A name of two
    or more words from 8 letters allows one edit more up to 16 letters ("Hnia Aemen" is two swaps from
    Hina Ameen): given name and surname together are rarer than either word."""
    if length <= 4:
        return 0
    if parts >= 2 and 8 <= length <= 16:
        return 2
    return 1 if length <= 10 else 2 if length <= 16 else 3


@dataclass(frozen=True)
class Words:
    """The words of one respelled text: as written (for capitals) and lower-cased, indexed."""

    raw: tuple[str, ...]
    lower: tuple[str, ...]
    #: the characters between each word and the one before it ("" before the first)
    gaps: tuple[str, ...]
    #: lower-case word -> its positions
    positions: dict[str, list[int]]
    #: length -> the distinct lower-case words of that length
    by_length: dict[int, list[str]]

    def near(self, word: str, bound: int) -> list[int]:
        """Positions of words within ``bound`` edits of ``word`` (lower-case)."""
        if bound == 0:
            return self.positions.get(word, [])
        pool = [w for n in range(len(word) - bound, len(word) + bound + 1) for w in self.by_length.get(n, ())]
        found = process.extract(word, pool, scorer=OSA.distance, score_cutoff=bound, limit=None)
        return sorted(i for choice, _, _ in found for i in self.positions[choice])

    def joined(self, i: int) -> bool:
        """True when word ``i`` follows the word before it across whitespace only (same phrase, no
        punctuation: "Question: Confucius" is not a two-word name)."""
        return i > 0 and self.gaps[i].isspace()


@lru_cache(maxsize=256)
def words(text: str) -> Words:
    """``Words`` of an ASCII text."""
    spans = [m.span() for m in _WORD.finditer(text)]
    raw = tuple(text[a:b] for a, b in spans)
    lower = tuple(w.lower() for w in raw)  # ASCII: lower-casing keeps the word boundaries
    gaps = tuple(text[spans[i - 1][1]:a] if i else "" for i, (a, _) in enumerate(spans))
    positions: defaultdict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(lower):
        positions[w].append(i)
    by_length: defaultdict[int, list[str]] = defaultdict(list)
    for w in positions:
        by_length[len(w)].append(w)
    return Words(raw, lower, gaps, positions, by_length)


@lru_cache(maxsize=4096)
def name_parts(name: str) -> tuple[str, ...]:
    """A folded name's words, split at spaces, hyphens and dots ("al-kuwaiti" -> "al", "kuwaiti")."""
    return tuple(w for w in re.split(r"[^a-z0-9]+", anyascii(name).lower()) if w)


def fuzzy_spans(found: Words, name: str, *, vowels: bool = True) -> list[tuple[int, int]]:
    """Runs of words ``[start, end)`` that spell ``name`` within ``edit_bound`` edits (spaces ignored).

    Args:
        found: the text's words.
        name: a folded name.
        vowels: False compares consonants only (``consonants``), for text from Arabic script.
    """
    parts = name_parts(name)
    if not parts:
        return []
    norm = (lambda s: s) if vowels else consonants
    key = norm("".join(parts))
    bound = edit_bound(len("".join(parts)), len(parts))
    starts: set[int] = set()
    if vowels:  # the whole name run together in one word ("nikolaiabilov")
        starts.update(found.near(key, bound))
    for j, part in enumerate(parts):
        if len(part) < 3:
            continue  # "al", "de": too many near words to anchor on
        # An anchor only proposes where to compare the whole name, so it may be one edit looser.
        loose = edit_bound(len(part)) + (len(parts) >= 2 and len(part) >= 4)
        near = found.near(part, loose) if vowels else _near_consonants(found, part)
        for pos in near:
            starts.update(range(pos - j - 1, pos - j + 2))
    spans: list[tuple[int, int]] = []
    n = len(parts)
    for start in sorted(s for s in starts if s >= 0):
        for size in range(max(1, n - 1), n + 2):
            window = norm("".join(found.lower[start:start + size]))
            # The first letter must agree: "Kelly" is not "R. Kelly" with the initial dropped.
            if (window[:1] == key[:1] and abs(len(window) - len(key)) <= bound
                    and OSA.distance(key, window, score_cutoff=bound) <= bound):
                spans.append((start, start + size))
    return spans


def _near_consonants(found: Words, part: str) -> list[int]:
    key = consonants(part)
    if len(key) < 2:
        return []
    bound = edit_bound(len(part)) and 1
    return [i for i, w in enumerate(found.lower) if abs(len(consonants(w)) - len(key)) <= bound
            and OSA.distance(key, consonants(w), score_cutoff=bound) <= bound]


@lru_cache(maxsize=4096)
def distinctive(given: str) -> bool:
    """True when a given name alone is rare enough in English to name one person (``GIVEN_MAX_ZIPF``)."""
    return len(given) >= 4 and given.isalpha() and zipf_frequency(given, "en") < GIVEN_MAX_ZIPF


def any_fuzzy(texts: Sequence[str], names: Sequence[str]) -> bool:
    """True when one of ``texts``' respellings spells one of the multi-word ``names`` within bounds, as
    written or as it sounds (``sounds``)."""
    for text in texts:
        readings = respellings(text) if not text.isascii() else (text, *respellings(text))
        arabic = abjad(text)
        for reading in readings:
            for heard in ((False,) if arabic else (False, True)):
                found = words(sounds(reading) if heard else reading)
                if any(len(name_parts(n)) >= 2 and fuzzy_spans(found, sounds(n) if heard else n, vowels=not arabic)
                       for n in names):
                    return True
    return False


#: Han, kana and Hangul runs (with the dots and hyphens that separate a foreign name's parts).
_SYLLABIC = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}][\p{Han}\p{Hiragana}\p{Katakana}"
                          r"\p{Hangul}\u00b7\u30fb\u30fc\u2010\-=\s]*")
#: Consonant classes for comparing a name with its rendering in syllables: a syllabary has no l/r,
#: b/p/f/v, k/g or t/d contrast that transcription keeps apart (Nikolai: 尼古拉 "NiGuLa",
#: ニコライ "nikorai"); pinyin's c, j, q, x, z and zh/ch/sh are all sibilants.
_CLASSES = str.maketrans("gcqxrpfvdzj", "kkkklbbbtss")
_CLASSES_PINYIN = str.maketrans("gcqxrpfvdzj", "kssslbbbtss")
#: A name's skeleton must be this long to be matched in syllables (shorter ones recur by chance).
SYLLABIC_MIN_CLASSES = 5


def _skeleton(letters: str, table: dict[int, int]) -> str:
    """Consonant classes of lower-case ``letters`` in order: vowels, h, w and y dropped, a class
    repeated in a row kept once ("NiKolLaI" and "Nikolai" both read n-k-l)."""
    core = re.sub(r"[^a-z]|[aeiouhwy]", "", re.sub(r"[tcsz]h|ts", "s", letters)
                  if table is _CLASSES_PINYIN else letters.replace("ph", "f")).translate(table)
    return _DOUBLE.sub(r"\1", core)


@lru_cache(maxsize=256)
def _syllable_skeletons(run: str) -> tuple[str | None, ...]:
    """A Han, kana or Hangul run as the consonant skeleton of each character's transliteration (one
    syllable each), ``None`` at each separator (the dot between a foreign name's parts, a hyphen, a
    space)."""
    table = _CLASSES_PINYIN if regex.search(r"\p{Han}", run) else _CLASSES
    out: list[str | None] = []
    for ch in run:
        if ch.isspace() or ch in "\u00b7\u30fb\u2010-=":
            if out and out[-1] is not None:
                out.append(None)
        elif ch != "\u30fc":  # the katakana long-vowel mark adds no consonant
            out.append(_skeleton(anyascii(ch).lower(), table))
    return tuple(out)


def _renders(tokens: tuple[str | None, ...], start: int, parts: list[tuple[str, bool]]) -> bool:
    """True when the syllable skeletons ``tokens[start:]`` begin with the name whose part skeletons are
    ``parts`` (skeleton, may span a separator), each part but the last ending at a separator."""
    key, hyphenated = parts[0]
    found = ""
    for end in range(start, len(tokens)):
        token = tokens[end]
        if token is None:
            if not hyphenated:
                return False
            continue
        found += token[1:] if found and token[:1] == found[-1:] else token  # a class repeated once
        if not key.startswith(found):
            return False
        if found != key:
            continue
        if len(parts) == 1:
            return True
        after = end + 1
        if after < len(tokens) and tokens[after] is None and _renders(tokens, after + 1, parts[1:]):
            return True
    return False


def syllabic_names(texts: Sequence[str], names: Sequence[str]) -> bool:
    """True when a Chinese, Japanese or Korean run in ``texts`` renders one of the multi-word ``names``:
    the name's parts, written with a separator between them as these scripts write foreign names
    (尼古拉·阿比洛夫, ニコライ・アビロフ, 니콜라이 아빌로프), each with the part's consonant skeleton
    (``_skeleton``) on syllable edges. Names of ``SYLLABIC_MIN_CLASSES`` classes or more only."""
    if all(t.isascii() for t in texts):
        return False  # the usual case, checked before the names are keyed
    keyed = []
    for n in names:
        words = anyascii(n).lower().split()
        parts = [(_skeleton(re.sub(r"[^a-z]", "", w), _CLASSES), "-" in w) for w in words]
        if len(parts) >= 2 and all(k for k, _ in parts) and sum(len(k) for k, _ in parts) >= SYLLABIC_MIN_CLASSES:
            keyed.append(parts)
    if not keyed:
        return False
    for text in texts:
        if text.isascii():
            continue
        for run in _SYLLABIC.finditer(text):
            tokens = _syllable_skeletons(run.group(0))
            if None not in tokens:
                continue  # a name's parts are written apart
            for start, token in enumerate(tokens):
                if token and any(parts[0][0].startswith(token) and _renders(tokens, start, parts) for parts in keyed):
                    return True
    return False


#: A name is looked for with its letters split anywhere (``split_names``) from this many letters.
SPLIT_MIN_LETTERS = 8
_QUOTED = re.compile(r"[\"'‘’“”`]([^\"'‘’“”`\n]{1,40})[\"'‘’“”`]")
_PHRASE_BREAK = re.compile(r"[,.;:!?()\[\]]")


@lru_cache(maxsize=256)
def _letters(text: str) -> tuple[str, tuple[int, ...], str]:
    """ASCII ``text`` lower-cased, the offsets of its letters and digits, and those characters alone."""
    lower = text.lower()
    where = tuple(m.start() for m in re.finditer(r"[a-z0-9]", lower))
    return lower, where, "".join(lower[i] for i in where)


def _split_at(text: str, key: str, parts: tuple[str, ...]) -> bool:
    """True when the letters and digits of ASCII ``text`` hold ``key`` as a run that starts and ends at
    word edges and is not the name's own words in separate phrases ("Stephen, king of England")."""
    lower, where, letters = _letters(text)
    start = letters.find(key)
    while start >= 0:
        a, b = where[start], where[start + len(key) - 1] + 1
        span = lower[a:b]
        edges = (a == 0 or not lower[a - 1].isalnum()) and (b == len(lower) or not lower[b].isalnum())
        phrases = tuple(re.findall(r"[a-z0-9]+", span)) == parts and _PHRASE_BREAK.search(span) is not None
        if edges and not phrases:
            return True
        start = letters.find(key, start + 1)
    return False


def split_names(texts: Sequence[str], names: Sequence[str]) -> bool:
    """True when one of the ASCII ``texts`` spells one of the ``names`` (folded) with its letters split
    anywhere by anything but letters and digits ("Niko lai Abi lov", "Conf ucius", "**Niko**lai
    *Abi*lov", "N,i,k,o,l,a,i A,b,i,l,o,v", one letter per line), or its quoted pieces put together do
    ("a = 'Nik', b = 'olai Abi', c = 'lov'"). Names of ``SPLIT_MIN_LETTERS`` letters or more, so that
    a run of ordinary words rarely spells one by chance."""
    keys = [(key, parts) for n in names if (parts := name_parts(n))
            and len(key := "".join(parts)) >= SPLIT_MIN_LETTERS]
    if not keys:
        return False
    for text in texts:
        if not text.isascii():
            continue
        pieces = _QUOTED.findall(text)
        joined = "".join(pieces) if len(pieces) >= 2 else ""
        for key, parts in keys:
            if _split_at(text, key, parts) or (joined and _split_at(joined, key, ())):
                return True
    return False
