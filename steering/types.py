"""Type aliases shared by the library. Shapes are written ``[batch, seq, d_model]`` throughout."""

from __future__ import annotations

from typing import TypeAlias

#: A chat: ``[{"role": "user", "content": "..."}, ...]``.
Messages: TypeAlias = list[dict[str, str]]
#: A prompt is raw text (used verbatim) or a chat rendered with the model's template.
Prompt: TypeAlias = str | Messages
#: Index of a decoder block whose output is read and steered.
LayerIndex: TypeAlias = int
