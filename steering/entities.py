"""Names mined from forget documents, for the hybrid gate (our addition to GUARD-IT, METHOD.md).

A forget set about a person or a work names it again and again; a prompt that mentions that name is
about the forget set even when its wording is far from every document (paraphrases, role play, other
languages). Names are runs of capitalised words; the ones frequent enough in the set are kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

_NAME = re.compile(
    r"\b([A-Z][\w'\-.]*(?:\s+(?:(?:al|el|de|da|di|du|van|von|der|den|bin|ibn|del|la|le|of)\s+)?[A-Z][\w'\-.]*)+)")
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


def fold(text: str) -> str:
    """Lower-case, accents removed: names match across casing and diacritics."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


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


def mentions(text: str, entities: Sequence[str]) -> bool:
    """True when ``text`` contains one of the names as whole words (case and accents ignored)."""
    if not entities:
        return False
    folded = fold(text)
    return any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", folded) for name in entities)
