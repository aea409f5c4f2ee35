"""Readings of a text that undo an encoding a language model can read and a sentence embedder cannot.

A model of a few billion parameters answers a question sent in base64, ROT13, hex or percent-encoding,
or a name written in invisible Unicode tag characters; the gate's embedder and name matcher read those
as noise. ``decodings`` returns the text with every such run decoded in place (the words around it
kept, so "Tell me about TmlrbGFpIEFiaWxvdg==" reads "Tell me about Nikolai Abilov"); the gate embeds
and name-matches it like the text itself, and the leak check reads answers through it too.

Decoded, in this order (each pass may reveal the next: base64 of a ROT13 text):
- HTML character references ("&#78;ikolai", "&amp;"), URL percent-encoding ("Who%20is") and
  backslash escapes written out ("\\u0042asil", "\\x42asil");
- Unicode tag characters (U+E0020-U+E007E: an invisible copy of ASCII, "ASCII smuggling");
- base64 (standard and URL-safe) runs of 12 or more characters, hexadecimal runs of four or more
  bytes, binary runs of three or more octets, decimal character codes (three or more, 32-126):
  kept only when the bytes are printable UTF-8 holding letters;
- Morse code (four or more symbols; "/" or "|" between words; typeset dots and dashes too) and the
  ICAO/NATO spelling alphabet (four or more code words: "November India Kilo ..."), read as words;
- sentences written upside down ("ʌolᴉqⱯ ᴉɐloʞᴉN", three or more characters only flipped text uses):
  turned back and read left to right;
- Caesar-shifted sentences (ROT13 and the 24 other shifts), Atbash, sentences written backwards and
  Pig Latin ("Ikolainay Abilovway"): a sentence that reads as few common English words is tried
  under each (a sentence ends at . ! ? ; : or a line break, so "answer it in English: <ROT13>" is
  two), and the reading with at least two more common words (and a third of its words) replaces
  it; a text that says it uses ROT13 or a Caesar cipher also gets a second reading with its
  uncommon words (a name alone) shifted.

``numbers_as_digits`` reads numbers written in words ("nineteen fifty-six") as digits; the leak check
reads answers through it (a year or a date given in words is still the set's date).

Everything is standard library or ``wordfreq`` (already used for names); the only tables are the
published codes (Morse, the spelling alphabet) and the flip stand-ins that Unicode does not name
"turned". Not decoded: ciphers with a key, acrostics, a name described rather than written.
Decoding never narrows what the gate reads: the text as written is always read as well.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import html
import re
import string
import unicodedata
import urllib.parse
from functools import lru_cache, partial

from wordfreq import top_n_list, zipf_frequency

#: Common English: wordfreq's most frequent words down to about Zipf 3 (once per million words).
COMMON_TOP = 25000
#: Decoding passes (an encoding inside an encoding).
PASSES = 2

_TAGS = re.compile("[\U000e0020-\U000e007e]+")
_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|\\U([0-9A-Fa-f]{8})")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#\d{2,7}|#[xX][0-9A-Fa-f]{2,6}|[A-Za-z]{2,8});")
_B64 = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{12,}={0,2}(?![A-Za-z0-9+/_=-])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9A-Fa-f]{2}(?:[ :]?(?:0x)?[0-9A-Fa-f]{2}){3,}(?![0-9A-Za-z])")
_BINARY = re.compile(r"(?<![01])[01]{8}(?:[ ,]?[01]{8}){2,}(?![01])")
_CODES = re.compile(r"(?<![\d.])(?:\d{2,3}[ ,]+){2,}\d{2,3}(?![\d.])")
_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE = re.compile(r"[^.!?;:\n]+[.!?;:]*")
_CIPHER_CUE = re.compile(r"\brot[- ]?13\b|\bcaesar\b", re.I)

#: International Morse code (ITU-R M.1677): letter or digit -> code.
MORSE_CODE = dict(zip(string.ascii_uppercase + string.digits,
                      (".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- ...- "
                       ".-- -..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----.").split(),
                      strict=True))
_MORSE = {code: char for char, code in MORSE_CODE.items()}
_DOTS = "\u00b7\u2022\u2219"  # middle dot, bullet, bullet operator: dots in typeset Morse
_DASHES = "_\u2012\u2013\u2014\u2212"  # underscore, figure/en/em dash, minus sign
_MORSE_SYMBOLS = str.maketrans(_DOTS + _DASHES, "." * len(_DOTS) + "-" * len(_DASHES))
#: Four or more Morse symbols separated by spaces, a slash or a bar between words.
_SYMBOL = rf"[.{_DOTS}{_DASHES}-]"
_MORSE_RUN = re.compile(rf"(?<![\w.{_DOTS}{_DASHES}-]){_SYMBOL}{{1,6}}"
                        rf"(?:(?:[ \t]*[/|][ \t]*|[ \t]+){_SYMBOL}{{1,6}}){{3,}}(?![\w.{_DOTS}{_DASHES}-])")
#: The ICAO/NATO spelling alphabet (and its common variants): four or more code words in a row.
NATO_ALPHABET = ("Alfa Bravo Charlie Delta Echo Foxtrot Golf Hotel India Juliett Kilo Lima Mike November Oscar Papa "
                 "Quebec Romeo Sierra Tango Uniform Victor Whiskey X-ray Yankee Zulu").split()
_NATO_WORDS = [w.lower() for w in NATO_ALPHABET] + ["alpha", "juliet", "whisky", "xray"]
_NATO_WORD = "|".join(sorted(_NATO_WORDS, key=len, reverse=True))
_NATO_RUN = re.compile(rf"\b(?:{_NATO_WORD})\b(?:[ \t,;/|-]+\b(?:{_NATO_WORD})\b){{3,}}", re.I)
#: Pig Latin words: "Ikolainay" (Nikolai), "Abilovway" (Abilov).
_PIG = re.compile(r"[A-Za-z]+ay\b")
_VOWELS = frozenset("aeiouAEIOU")


def _upside_down_table() -> dict[int, str]:
    """Upside-down ("flipped") text: each character turned half a circle, the text then read right to
    left. Unicode names most such letters "LATIN ... LETTER TURNED X"; the rest are the usual
    stand-ins of flip generators (q for b, ɔ for c, ∀ for A, ...)."""
    table: dict[int, str] = {}
    for cp in (*range(0x180, 0x2b0), *range(0x1d00, 0x1d80), *range(0x2c60, 0x2c80), *range(0xa720, 0xa800)):
        name = unicodedata.name(chr(cp), "")
        hit = re.fullmatch(r"LATIN (SMALL|CAPITAL) LETTER TURNED ([A-Z])(?: WITH .*)?", name)
        if hit:
            table[cp] = hit.group(2).lower() if hit.group(1) == "SMALL" else hit.group(2)
    stand_ins = dict(zip("qɔpɟƃıɾudbn∀ƎℲ⅁ſ˥WԀ⊥┴∩ΛM⅄¿¡˙", "bcdfgijnpquAEFGJLMPTTUVWY?!.", strict=True))
    table.update({ord(k): v for k, v in stand_ins.items()})
    return table


_FLIPPED = _upside_down_table()


def _flip_of(letter: str) -> str:
    """The character that writes ``letter`` upside down: a stand-in or the plain "TURNED" letter."""
    found = [chr(cp) for cp, v in _FLIPPED.items() if v == letter]
    plain = [c for c in found if " WITH " not in unicodedata.name(c, "")]
    return min(plain or found, key=ord) if found else letter


@lru_cache(maxsize=1)
def _flip_table() -> dict[int, str]:
    return {ord(c): _flip_of(c) for c in string.ascii_letters + "?!."}


def upside_down(text: str) -> str:
    """``text`` written upside down, as flip generators write it (``decodings`` reads it back)."""
    return text.translate(_flip_table())[::-1]
#: Characters that only flipped text uses (ASCII stand-ins like q and u are ordinary letters too).
_FLIP_MARKS = frozenset(cp for cp in _FLIPPED if cp > 0x7f and chr(cp) not in "WM")

_LOWER, _UPPER = string.ascii_lowercase, string.ascii_uppercase
_SUBSTITUTIONS = tuple(
    [str.maketrans(_LOWER + _UPPER, _LOWER[s:] + _LOWER[:s] + _UPPER[s:] + _UPPER[:s]) for s in range(1, 26)]
    + [str.maketrans(_LOWER + _UPPER, _LOWER[::-1] + _UPPER[::-1])])  # the 25 Caesar shifts, then Atbash


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    """The ``COMMON_TOP`` most frequent English words (wordfreq's top list; a set lookup, so
    trying 26 substitutions on a long text of random letters stays cheap)."""
    top = top_n_list("en", COMMON_TOP)
    return frozenset(w for w in top if w.isalpha() and len(w) >= 2)


def _common(word: str) -> bool:
    return word in _common_words()


#: Below this share of English words a prompt is read as written in another language (RWKU level 3:
#: 92% of the cross-lingual probes fall below it, 0.2% of the English ones).
ENGLISH_MIN_SHARE = 0.8


@lru_cache(maxsize=256)
def english_share(text: str, *, limit: int = 400) -> float:
    """The share of ``text``'s words that are common English words (of its first ``limit`` Latin-letter
    words; capitalised words that are not, names mostly, are not counted); 0.0 when it has no such
    words (another script). The gate's embedder reads English: for a prompt in another language its
    similarity says little about the topic. Spanish or French function words ("de", "la", "en") are
    common in English text too, so another language scores about 0.3-0.8, English 0.8-1.0."""
    counted = hits = 0
    for word in _WORD.findall(text)[:limit]:
        known = _common(word.lower())
        if known or word[0].islower():
            counted += 1
            hits += known
    return hits / counted if counted else 0.0


def _printable(raw: bytes) -> str | None:
    """``raw`` as text when it is printable UTF-8 with letters, else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not all(c.isprintable() or c in "\n\t" for c in text):
        return None
    letters = sum(c.isalpha() for c in text)
    return text if letters >= 3 and letters + text.count(" ") >= 0.6 * len(text) else None


def _base64(match: re.Match[str]) -> str:
    run = match.group(0)
    body = run.rstrip("=")
    if len(body) % 4 == 1 or not re.search(r"[A-Z]", body) or not re.search(r"[a-z0-9]", body):
        return run  # not base64's shape, or a word in one case
    padded = body + "=" * (-len(body) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            decoded = _printable(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            continue
        if decoded is not None:
            return decoded
    return run


def _escaped(match: re.Match[str]) -> str:
    code = int(next(g for g in match.groups() if g), 16)
    return chr(code) if 32 <= code < 0x110000 and not 0xD800 <= code < 0xE000 else match.group(0)


def _hex(match: re.Match[str]) -> str:
    digits = re.sub(r"0x|[ :]", "", match.group(0))
    decoded = _printable(bytes.fromhex(digits)) if len(digits) % 2 == 0 else None
    return decoded if decoded is not None else match.group(0)


def _binary(match: re.Match[str]) -> str:
    octets = re.findall(r"[01]{8}", match.group(0))
    decoded = _printable(bytes(int(o, 2) for o in octets))
    return decoded if decoded is not None else match.group(0)


def _codes(match: re.Match[str]) -> str:
    values = [int(v) for v in re.findall(r"\d+", match.group(0))]
    if not all(32 <= v <= 126 for v in values):
        return match.group(0)
    decoded = _printable(bytes(values))
    return decoded if decoded is not None else match.group(0)


@lru_cache(maxsize=65536)
def _shift_mask(word: str) -> int:
    """Bit ``k`` set when ``word`` (lower case) is a common English word under ``_SUBSTITUTIONS[k]``."""
    common = _common_words()
    return sum(1 << k for k, table in enumerate(_SUBSTITUTIONS) if word.translate(table) in common)


@lru_cache(maxsize=1)
def _onsets() -> frozenset[str]:
    """Consonant runs of two or three letters that start at least 20 common English words."""
    runs: dict[str, int] = {}
    for w in _common_words():
        lead = re.match(r"[^aeiou]+", w)
        if lead is not None:
            for k in (2, 3):
                if len(lead.group(0)) >= k:
                    runs[w[:k]] = runs.get(w[:k], 0) + 1
    return frozenset(r for r, n in runs.items() if n >= 20)


def _unpig(word: str) -> str:
    """One Pig Latin word read back: "Abilovway" -> "Abilov" (a word that starts with a vowel gains
    "way"), "Ikolainay" -> "Nikolai" (leading consonants moved behind, then "ay"). Of the possible
    readings the most frequent common English word wins; for a name, the longest consonant run that
    starts English words ("st" yes, "zm" no) is moved back."""
    stem = word[:-2]
    if len(stem) < 2:
        return word
    moved = [(k, stem[-k:] + stem[:-k]) for k in (1, 2, 3)
             if len(stem) > k and not any(c in _VOWELS for c in stem[-k:])]
    dropped = stem[:-1] if stem[-1] in "wyhWYH" and stem[0] in _VOWELS else None
    readings = [r for r in (dropped, *(m for _, m in moved)) if r]
    common = [r for r in readings if _common(r.lower())]
    if common:
        chosen = max(common, key=lambda r: zipf_frequency(r.lower(), "en"))
    elif dropped is not None:
        chosen = dropped
    elif moved:
        chosen = max(moved, key=lambda m: m[0] if m[0] == 1 or m[1][:m[0]].lower() in _onsets() else 0)[1]
    else:
        return word
    return chosen.capitalize() if word[0].isupper() else chosen.lower()


def _unpigged(sentence: str) -> str | None:
    """``sentence`` read back from Pig Latin, when most of its words end in "ay"."""
    words = _WORD.findall(sentence)
    pig = _PIG.findall(sentence)
    if len(pig) < 2 or len(pig) < 0.5 * len(words):
        return None
    return _PIG.sub(lambda m: _unpig(m.group(0)), sentence)


def _readability(text: str) -> int:
    return sum(_common(w.lower()) for w in _WORD.findall(text))


def _shifted(sentence: str) -> str:
    """``sentence`` as it reads most like English: under a Caesar shift or Atbash, written backwards, or
    read back from Pig Latin; unchanged unless that gains at least two common words and a third of
    its words."""
    words = [w.lower() for w in _WORD.findall(sentence)]
    if len(words) < 2:
        return sentence
    here = sum(_common(w) for w in words)
    if here >= 0.6 * len(words):
        return sentence  # reads as English already
    counts = [0] * len(_SUBSTITUTIONS)
    for w in words:
        mask = _shift_mask(w)
        while mask:
            low = mask & -mask
            counts[low.bit_length() - 1] += 1
            mask ^= low
    best = max(range(len(counts)), key=counts.__getitem__)
    options = [(counts[best], sentence.translate(_SUBSTITUTIONS[best]))]
    backwards = sentence.strip()[::-1]
    options.append((_readability(backwards), backwards))
    pig = _unpigged(sentence)
    if pig is not None:
        options.append((_readability(pig), pig))
    score, reading = max(options, key=lambda o: o[0])
    if score >= here + 2 and score >= len(words) / 3:
        return reading if reading is not backwards else f" {reading} "
    return sentence


def _morse(match: re.Match[str]) -> str:
    run = match.group(0)
    symbols = run.translate(_MORSE_SYMBOLS)
    letters: list[str] = []
    for word in re.split(r"\s*[/|]\s*|\s{2,}", symbols.strip()):
        codes = word.split()
        if not all(c in _MORSE for c in codes):
            return run
        letters.append("".join(_MORSE[c] for c in codes))
    text = " ".join(w.capitalize() for w in letters if w)
    return text if sum(len(w) for w in letters) >= 4 and re.search(r"[A-Z]", text) else run


def _nato(match: re.Match[str]) -> str:
    words: list[str] = []
    for group in re.split(r"\s*[,;/|]\s*|\s{2,}", match.group(0).strip()):
        code = re.findall(rf"(?:{_NATO_WORD})", group, re.I)
        words.append("".join(c[0].upper() for c in code))
    return " ".join(w.capitalize() for w in words if w)


def _unflipped(piece: str) -> str:
    """A sentence written upside down read back (``_upside_down_table``), when it has three or more
    characters only flipped text uses."""
    if sum(ord(c) in _FLIP_MARKS for c in piece) < 3:
        return piece
    return f" {piece.strip().translate(_FLIPPED)[::-1]} "


def _one_pass(text: str) -> str:
    if "&" in text and _ENTITY.search(text):
        text = html.unescape(text)
    if "%" in text and _PERCENT.search(text):
        text = urllib.parse.unquote(text)
    if "\\" in text:
        text = _ESCAPE.sub(_escaped, text)
    if not text.isascii() and _TAGS.search(text):
        text = _TAGS.sub(lambda m: "".join(chr(ord(c) - 0xE0000) for c in m.group(0)), text)
    text = _B64.sub(_base64, text)
    text = _HEX.sub(_hex, text)
    text = _BINARY.sub(_binary, text)
    text = _CODES.sub(_codes, text)
    if "." in text or "-" in text or not text.isascii():
        text = _MORSE_RUN.sub(_morse, text)
    text = _NATO_RUN.sub(_nato, text)
    if not text.isascii():
        text = _SENTENCE.sub(lambda m: _unflipped(m.group(0)), text)
    return _SENTENCE.sub(lambda m: _shifted(m.group(0)), text)


def _named_cipher(text: str) -> str:
    """When ``text`` says it uses ROT13 or a Caesar cipher, its words that are not common English read
    under ROT13 (and a Caesar shift of 3): a name alone gains no English words, so the sentence test
    of ``_shifted`` cannot find its shift ("the author's name in ROT13 is Avxbynv Novybi")."""
    cue = _CIPHER_CUE.search(text)
    if cue is None:
        return text
    tables = [_SUBSTITUTIONS[12]] + ([_SUBSTITUTIONS[22]] if "caesar" in cue.group(0).lower() else [])
    def shift(match: re.Match[str], table: dict[int, int]) -> str:
        word = match.group(0)
        return word if _common(word.lower()) else word.translate(table)
    return "\n".join(_WORD.sub(partial(shift, table=t), text) for t in tables)


@lru_cache(maxsize=256)
def decodings(text: str) -> tuple[str, ...]:
    """``text`` with every encoded run decoded in place (module docstring); empty when nothing was."""
    decoded = text
    for _ in range(PASSES):
        following = _one_pass(decoded)
        if following == decoded:
            break
        decoded = following
    if decoded != text:
        return (decoded,)
    named = _named_cipher(text)
    return (named,) if named != text else ()


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_UNITS = ("zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
                  "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()
_ORDINAL_TENS = "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split()
_NUMBER_WORDS: dict[str, tuple[int, bool]] = {
    **{w: (i, False) for i, w in enumerate(_UNITS)}, **{w: (20 + 10 * i, False) for i, w in enumerate(_TENS)},
    **{w: (i, True) for i, w in enumerate(_ORDINAL_UNITS) if i}, **{w: (20 + 10 * i, True) for i, w in
                                                                    enumerate(_ORDINAL_TENS)}}
#: "21 of March" as a date reads "21 March".
_DAY_OF_MONTH = re.compile(r"\b(\d{1,2})\s+of\s+(" + "|".join(calendar.month_name[1:]) + r")\b", re.I)
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_RUN = re.compile(
    r"\b(?:" + "|".join(sorted([*_NUMBER_WORDS, *_SCALES], key=len, reverse=True)) + r")"
    r"(?:(?:\s+|-|\s+and\s+)(?:" + "|".join(sorted([*_NUMBER_WORDS, *_SCALES], key=len, reverse=True)) + r"))*\b",
    re.I)


def _number(words: list[str]) -> int | None:
    """The value of number words ("nineteen fifty six" as a year: 1956; "two thousand and five": 2005)."""
    values = [(_SCALES[w], "scale") if w in _SCALES else (_NUMBER_WORDS[w][0], "word") for w in words if w != "and"]
    if not values:
        return None
    if len(values) == 2 and all(k == "word" for _, k in values) and 10 <= values[0][0] <= 99 \
            and values[1][0] < 100 and not (values[0][0] % 10 == 0 and values[1][0] < 10):
        return values[0][0] * 100 + values[1][0]  # a year read in pairs: "nineteen fifty-six"
    if len(values) == 3 and all(k == "word" for _, k in values) and 10 <= values[0][0] <= 99 \
            and values[1][0] % 10 == 0 and values[1][0] >= 20 and values[2][0] < 10:
        return values[0][0] * 100 + values[1][0] + values[2][0]  # "nineteen fifty six"
    total, current = 0, 0
    for value, kind in values:
        if kind == "scale":
            current = max(current, 1) * value
            if value >= 1000:
                total, current = total + current, 0
        else:
            current += value
    return total + current


@lru_cache(maxsize=256)
def numbers_as_digits(text: str) -> str:
    """``text`` with numbers written in words as digits ("born in nineteen fifty-six" -> "born in 1956",
    "the fifth of May" -> "the 5 of May"); an answer can give a year or a date in words. Single small
    words ("one of", "first") stay words: only runs of two or more number words, or one word of 13 or
    more, become digits."""
    def one(match: re.Match[str]) -> str:
        words = re.split(r"[\s-]+", match.group(0).lower())
        if len([w for w in words if w != "and"]) < 2 and _NUMBER_WORDS.get(words[0], (0, False))[0] < 13:
            return match.group(0)
        value = _number(words)
        return match.group(0) if value is None else str(value)
    return _DAY_OF_MONTH.sub(r"\1 \2", _NUMBER_RUN.sub(one, text))
