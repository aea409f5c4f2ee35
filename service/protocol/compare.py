"""The ``compare`` scope's bodies: ``POST /v1/compare`` (steered and unsteered, same seed) and
``POST /v1/gate`` (the gate decision K(x) without generating; GUARD-IT, arXiv 2605.12765)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from service.protocol.common import (
    ONE_OF_PROMPT_MESSAGES,
    MatchModel,
    Messages,
    RequestModel,
    Text,
    check_prompt_chars,
    match_models,
    one_of_prompt_or_messages,
)
from service.protocol.generate import GenerateRequest, GenerateResponse, generate_response
from steering import GateMatch, Generation
from steering.recheck import with_answer
from steering.types import Prompt


class CompareRequest(GenerateRequest):
    """``POST /v1/compare``: the generate body without ``stream``."""

    stream: Literal[False] = Field(False, exclude=True)


class CompareResponse(BaseModel):
    """The same request steered and unsteered, same seed."""

    steered: GenerateResponse
    unsteered: GenerateResponse
    matched: list[MatchModel]
    first_divergent_token: int | None


def first_divergence(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """Index of the first differing token of two generations; None when identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_response(steered: Generation, unsteered: Generation) -> CompareResponse:
    """``POST /v1/compare`` body (the compare scope always sees the gate)."""
    return CompareResponse(
        steered=generate_response(steered),
        unsteered=generate_response(unsteered),
        matched=match_models(steered.matched),
        first_divergent_token=first_divergence(steered.token_ids, unsteered.token_ids),
    )


class GateRequest(RequestModel):
    """``POST /v1/gate``: exactly one of ``prompt`` (one user turn) and ``messages``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_OF_PROMPT_MESSAGES)

    prompt: Text | SkipJsonSchema[None] = Field(None, min_length=1)
    messages: Messages | SkipJsonSchema[None] = None
    answer: Text | None = Field(None, min_length=1, description="an answer to the prompt: the decision the "
                                "answer re-check makes on the prompt followed by it")

    def to_prompt(self, max_chars: int) -> Prompt:
        """What the gate embeds: the prompt text or the chat (with ``answer`` as an assistant turn).

        Raises:
            ConfigError: neither or both of prompt and messages, or text over ``max_chars``.
        """
        one_of_prompt_or_messages(self.prompt, self.messages)
        chat = [{"role": "user", "content": self.prompt or ""}] if self.prompt is not None else \
            [m.as_dict() for m in self.messages or []]
        field = "prompt" if self.prompt is not None else "messages"
        check_prompt_chars(sum(len(t["content"]) for t in chat) + len(self.answer or ""), max_chars, field)
        if self.answer is not None:
            return with_answer(chat, self.answer)
        return self.prompt if self.prompt is not None else chat


class GateResponse(BaseModel):
    """Which forget sets and clusters a prompt opens."""

    matched: list[MatchModel]
    steered: bool


def gate_response(matches: list[GateMatch]) -> GateResponse:
    """``POST /v1/gate`` body."""
    return GateResponse(matched=match_models(matches), steered=bool(matches))
