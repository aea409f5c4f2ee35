"""What the GUARD-IT gate (arXiv 2605.12765, METHOD.md step 6) reads of a request: everything the model reads.

The paper embeds the prompt once. A sentence-transformer reads only its first ~256 word pieces, and a
mean-pooled embedding of a long text is dominated by whatever fills most of it, so a question after a
page of filler, in a system message or in an earlier turn would leave the gate closed while the model
still answers it. Here every turn of every role is read, each in windows the embedder sees whole:

- the turn itself (short turns are their own only window, so a plain question is gated as in the paper);
- each sentence of a longer turn (a question hidden among other sentences is seen alone; a sentence
  longer than ``WINDOW_WORDS`` is cut into overlapping pieces);
- packs of consecutive sentences up to ``WINDOW_WORDS`` words, overlapping by half (a question spread
  over several sentences);
- for a chat, the whole conversation as well (the paper's reading of a short chat);
- the Latin re-spellings of a turn written with look-alike letters, leetspeak, spaced letters or
  another script (``steering.names.respellings``): the embedder reads "B4s1l" as noise, "Basil" as a name;
- the turn with its encoded runs decoded (``steering.decodings``: base64, hex, ROT13, percent-encoding,
  character references, invisible tag characters), read in windows and searched for names like the turn.

The best-scoring window counts. Names are matched over the full texts, never over windows, so a name
split across a window edge is still found. Identical windows (repeated filler) are embedded once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from steering.decodings import decodings
from steering.names import respellings
from steering.types import Prompt

#: Longest window in words: ~1.4 word pieces per English word keeps it under the embedder's 128-piece
#: sweet spot (MiniLM was trained on 128 pieces and truncates at 256).
WINDOW_WORDS = 80
#: A turn of at most this many words and one sentence is read as a whole only.
SHORT_WORDS = 40

#: Re-spellings of a turn that are embedded too (the first is the look-alike reading).
RESPELLINGS = 2

_SENTENCE_END = re.compile(r"(?<=[.!?;。！？])\s+|\n+")


@dataclass(frozen=True)
class GateInput:
    """The texts the gate reads for one request.

    Attributes:
        windows: texts to embed; the highest similarity among them counts.
        full_texts: whole turns (and the whole chat), where names are looked for.
    """

    windows: tuple[str, ...]
    full_texts: tuple[str, ...]


def contents(prompt: Prompt) -> list[str]:
    """The text of every turn, every role, in order (a raw prompt is one turn)."""
    if isinstance(prompt, str):
        return [prompt] if prompt.strip() else []
    return [m["content"] for m in prompt if isinstance(m.get("content"), str) and m["content"].strip()]


def sentences(text: str) -> list[str]:
    """Sentences and lines of ``text`` (a line break ends a sentence too)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _pieces(words: list[str], size: int) -> list[str]:
    """``words`` in windows of ``size`` words overlapping by half (one window when it fits)."""
    if len(words) <= size:
        return [" ".join(words)]
    step = max(1, size // 2)
    starts = range(0, len(words) - size + step, step)
    return [" ".join(words[s:s + size]) for s in starts]


def windows(text: str, *, size: int = WINDOW_WORDS, short: int = SHORT_WORDS) -> list[str]:
    """The windows of one turn (see the module docstring); the turn itself comes first."""
    parts = sentences(text)
    if len(parts) <= 1 and len(text.split()) <= short:
        return [text.strip()]
    out = [text.strip()]
    for sentence in parts:
        out.extend(_pieces(sentence.split(), size))
    packed: list[list[str]] = []  # consecutive sentences up to ``size`` words each
    current: list[str] = []
    for sentence in parts:
        n = len(sentence.split())
        if current and len(" ".join(current).split()) + n > size:
            packed.append(current)
            current = current[len(current) // 2 + len(current) % 2:]  # keep the later half: overlap
            while current and len(" ".join(current).split()) + n > size:
                current = current[1:]
        current.append(sentence)
    if current:
        packed.append(current)
    out.extend(" ".join(p) for p in packed if len(p) > 1)
    return out


def gate_input(prompt: Prompt) -> GateInput:
    """Everything the gate reads of ``prompt``: windows of every turn, and the full texts for names."""
    turns = contents(prompt)
    rows: list[str] = []
    for turn in turns:
        rows.extend(windows(turn))
        for variant in respellings(turn)[:RESPELLINGS]:
            rows.extend(windows(variant))
    full = list(turns)
    for turn in turns:
        for decoded in decodings(turn):
            rows.extend(windows(decoded))
            full.append(decoded)
    if not isinstance(prompt, str) and len(turns) > 1:
        whole = "\n".join(turns)
        rows.append(whole)
        full.append(whole)
    return GateInput(tuple(dict.fromkeys(r for r in rows if r)), tuple(full))
