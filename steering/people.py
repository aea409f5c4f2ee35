"""Whether a name mined from forget documents is a person's (for the subject gate).

The subject rule protects a person by name and keeps their works, places and relatives answerable.
Taking a work or a place for the subject does the opposite: a set about J.K. Rowling whose most
frequent name is "Harry Potter" would steer questions about Hogwarts, a set about the yen keyed on
"Japan" would steer "What is the capital of Japan?". Each mention of a candidate is read in its
context for cues of a person (a title or role before it, "(born", "was born", "'s parents", "who",
a pronoun opening the next sentence) and of a thing (a determiner or place preposition before it,
"series", "novel", "city", "currency" after it). A name is a person's when person cues are found
in at least ``MIN_PERSON_SHARE`` of its mentions and outnumber the thing cues.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Share of a name's mentions that must carry a person cue (measured on RWKU targets and TOFU:
#: people 0.25-1.0; "Harry Potter" in Rowling's passages 0.04, "Japan" in a yen set 0).
MIN_PERSON_SHARE = 0.15

_ROLES = (r"author|writer|novelist|poet|playwright|journalist|actor|actress|singer|rapper|musician|"
          r"artist|painter|director|producer|philosopher|scientist|politician|president|senator|"
          r"mr|mrs|ms|dr|sir|dame|lady|lord|saint|st|prof|professor|general|captain|coach|"
          r"emperor|empress|pope|rev|reverend|uncle|aunt")
_BEFORE_PERSON = re.compile(rf"(?:\b(?:{_ROLES})\.?|\b(?:by|with|met|married|and|whom)|[Ww]ho is|[Aa]bout)\s+$")
_AFTER_PERSON = re.compile(
    r"^(?:\s*\((?:born|b\.|née|c\.|\d|[A-Z][a-z]+ \d)"
    r"|,?\s+(?:was|is|has|had|became|grew|wrote|writes|said|says|died|lived|married|studied|worked|"
    r"received|won|starred|began|started|published|released|moved|left|joined|founded|"
    r"attended|earned|continues|uses|often|also|later|first|frequently|acted|played|sang|appeared|"
    r"performed|directed|served|taught|ruled|led|spent|retired)\b"
    r"|,?\s+(?:who|whose|whom)\b"
    r"|(?:'s|’s)\s+(?:father|mother|parents|wife|husband|son|daughter|children|family|birth|"
    r"childhood|career|life|early|death|upbringing|writing|writings|works|work|books|novels|"
    r"background|heritage|personal|own|first|debut|style|upbringing|influence|contributions?))")
_AFTER_THING = re.compile(
    r"^(?:'s|’s)?\s+(?:series|novels?|books?|films?|movies?|franchise|saga|universe|games?|album|"
    r"songs?|show|city|river|mountains?|island|islands|empire|dynasty|awards?|prize|university|"
    r"college|school|company|corporation|inc|ltd|bank|currency|government|economy|market|"
    r"stock|state|province|region|war|and the|fans|world|character|characters)\b", re.IGNORECASE)
_BEFORE_THING = re.compile(r"\b(?:the|in|of|to|from|across|throughout|within|into|at|near|visit|"
                           r"visited|the new|a)\s+$", re.IGNORECASE)
_PRONOUN_OPENING = re.compile(r"^[^.!?]{0,200}[.!?]\s+(?:He|She|His|Her)\b")


@dataclass(frozen=True)
class PersonCues:
    """Counts over a name's mentions: how many carry a person cue, how many a thing cue."""

    mentions: int
    person: int
    thing: int

    @property
    def is_person(self) -> bool:
        """Person cues in at least ``MIN_PERSON_SHARE`` of mentions, more than thing cues."""
        return self.mentions > 0 and self.person >= MIN_PERSON_SHARE * self.mentions and self.person > self.thing


def person_cues(texts: Sequence[str], name: str) -> PersonCues:
    """Cues around every case-insensitive whole-word mention of ``name`` (folded) in ``texts``."""
    pattern = re.compile(rf"(?<![\w\-]){_spelled(name)}(?![\w\-])", re.IGNORECASE)
    mentions = person = thing = 0
    for text in texts:
        for hit in pattern.finditer(text):
            if not hit.group(0)[:1].isupper():
                continue
            mentions += 1
            before, after = text[max(0, hit.start() - 40):hit.start()], text[hit.end():hit.end() + 240]
            if _BEFORE_PERSON.search(before) or _AFTER_PERSON.match(after) or _PRONOUN_OPENING.match(after):
                person += 1
            elif _BEFORE_THING.search(before) or _AFTER_THING.match(after):
                thing += 1
    return PersonCues(mentions, person, thing)


def _spelled(name: str) -> str:
    """A regex for a folded name in text that may carry accents or spaced initials ("j. k.")."""
    words = [re.escape(w).replace(r"\.", r"\.?") for w in name.split()]
    return r"\s*".join(words) if all(len(w.rstrip("\\.?")) == 1 for w in words[:-1]) else r"\s+".join(words)
