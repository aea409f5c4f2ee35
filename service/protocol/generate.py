"""``POST /v1/generate``: the body and the response (GUARD-IT, arXiv 2605.12765; docs/SPEC.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from service.generation import GenerationRequest
from service.protocol.common import (
    ONE_OF_PROMPT_MESSAGES,
    GuarditInfo,
    Messages,
    RequestModel,
    Stop,
    Temperature,
    Text,
    TopP,
    Usage,
    check_prompt_chars,
    check_stop,
    generation_info,
    one_of_prompt_or_messages,
    stop_tuple,
)
from service.settings import Settings
from steering import Generation, SamplingParams

DEFAULT_MAX_NEW_TOKENS = 128


class GenerateRequest(RequestModel):
    """``POST /v1/generate``: exactly one of ``prompt`` and ``messages``. There is no field that
    turns steering off: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_OF_PROMPT_MESSAGES)

    prompt: Text | SkipJsonSchema[None] = Field(
        None, description="a user turn, rendered with the chat template (exactly one of prompt and messages)")
    messages: Messages | SkipJsonSchema[None] = Field(
        None, description="a chat (exactly one of prompt and messages)")
    max_new_tokens: int | None = Field(None, ge=1, description="default 128, or the server's cap if lower")
    temperature: Temperature = Field(0.0, description="0 = greedy")
    top_p: TopP = 1.0
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Stop = None
    ignore_eos: bool = Field(False, description="never stop at end-of-sequence: always max_new_tokens "
                             "(benchmarks; as in vLLM)")
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Stop) -> Stop:
        return check_stop(value)

    def to_request(self, *, request_id: str, route: str, settings: Settings) -> GenerationRequest:
        """The engine's request; a ``prompt`` becomes a single user turn.

        Args:
            request_id: for logs and response ids.
            route: for logs.
            settings: the server's limits (``max_new_tokens`` caps the default; an explicit value
                above it is a 422 from the engine; ``max_prompt_chars`` is checked here).

        Raises:
            ConfigError: neither or both of prompt and messages, or a prompt over the character cap.
        """
        one_of_prompt_or_messages(self.prompt, self.messages)
        if self.prompt is not None:
            chat = [{"role": "user", "content": self.prompt}]
            field = "prompt"
        else:
            chat = [m.as_dict() for m in self.messages or []]
            field = "messages"
        check_prompt_chars(sum(len(t["content"]) for t in chat), settings.prompt_char_limit, field)
        limit = self.max_new_tokens if self.max_new_tokens is not None else \
            min(DEFAULT_MAX_NEW_TOKENS, settings.max_new_tokens)
        params = SamplingParams(max_new_tokens=limit, temperature=self.temperature,
                                top_p=self.top_p, seed=self.seed, stop=stop_tuple(self.stop),
                                ignore_eos=self.ignore_eos)
        return GenerationRequest(chat, params, request_id=request_id, route=route, prompt_field=field)


class GenerateResponse(BaseModel):
    """A generation; ``guardit`` only for callers allowed to see the gate (docs/SPEC.md)."""

    text: str
    finish_reason: Literal["stop", "length", "cancelled"]
    usage: Usage
    guardit: GuarditInfo | None = None


def generate_response(gen: Generation, *, show_gate: bool = True) -> GenerateResponse:
    """``POST /v1/generate`` body from a steering ``Generation``; ``show_gate`` adds ``guardit``."""
    return GenerateResponse(
        text=gen.text,
        finish_reason=gen.finish_reason,
        usage=Usage(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens),
        guardit=generation_info(gen) if show_gate else None,
    )
