"""OpenAI-compatible bodies (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``) with the
gate decision as an optional ``guardit`` object beside the standard fields (docs/SPEC.md).

Two defaults differ from OpenAI's on purpose: an omitted ``temperature`` is the server's
``GUARDIT_DEFAULT_TEMPERATURE`` (0, greedy; OpenAI's is 1, which makes a small model ramble), and a
``max_tokens`` above the server's ``GUARDIT_MAX_NEW_TOKENS`` is capped to it (the answer then ends
with ``finish_reason: "length"``) instead of refused, as an OpenAI client expects of an upper bound.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.generation import GenerationRequest
from service.protocol.common import (
    GuarditInfo,
    Messages,
    RequestModel,
    Stop,
    Temperature,
    Text,
    TopP,
    check_prompt_chars,
    check_stop,
    stop_tuple,
)
from service.settings import Settings
from steering import Generation, SamplingParams

#: OpenAI's default ``max_tokens`` of ``/v1/completions``.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
CHAT_DEFAULT_MAX_TOKENS = 128


class StreamOptions(RequestModel):
    """``stream_options``: ``include_usage`` adds a last chunk with usage."""

    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


class _OpenAIRequest(RequestModel):
    """Fields shared by chat and text completions; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: Text
    max_tokens: int | None = Field(None, ge=1, description="upper bound; above the server's maximum it is "
                                   "capped to it")
    temperature: Temperature | None = Field(None, description="default: the server's "
                                            "GUARDIT_DEFAULT_TEMPERATURE (0; OpenAI's own default is 1)")
    top_p: TopP | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Stop = None
    n: int | None = Field(None, ge=1, le=1, description="must be 1: one choice per request")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: always produce max_tokens

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Stop) -> Stop:
        return check_stop(value)

    def _params(self, requested: int | None, default: int, settings: Settings) -> SamplingParams:
        cap = settings.max_new_tokens
        limit = min(requested, cap) if requested is not None else min(default, cap)
        temperature = settings.default_temperature if self.temperature is None else self.temperature
        return SamplingParams(max_new_tokens=limit, temperature=temperature,
                              top_p=1.0 if self.top_p is None else self.top_p, seed=self.seed,
                              stop=stop_tuple(self.stop), ignore_eos=self.ignore_eos)


class ChatCompletionRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``."""

    messages: Messages
    max_completion_tokens: int | None = Field(None, ge=1, description="as max_tokens (preferred by OpenAI)")

    def to_request(self, *, request_id: str, route: str, settings: Settings) -> GenerationRequest:
        """The engine's request (defaults and caps in the module docstring).

        Raises:
            ConfigError: the messages exceed the server's character cap.
        """
        check_prompt_chars(sum(len(m.text) for m in self.messages), settings.prompt_char_limit, "messages")
        field = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        params = self._params(limit, CHAT_DEFAULT_MAX_TOKENS, settings)
        return GenerationRequest([m.as_dict() for m in self.messages], params,
                                 request_id=request_id, route=route, prompt_field="messages",
                                 max_tokens_field=field)


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions``: ``prompt`` is raw text (no chat template), one string or a list of one."""

    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=1)]

    def to_request(self, *, request_id: str, route: str, settings: Settings) -> GenerationRequest:
        """The engine's request (``max_tokens`` defaults to 16 as in OpenAI's API).

        Raises:
            ConfigError: the prompt exceeds the server's character cap.
        """
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        check_prompt_chars(len(prompt), settings.prompt_char_limit, "prompt")
        params = self._params(self.max_tokens, COMPLETIONS_DEFAULT_MAX_TOKENS, settings)
        return GenerationRequest(prompt, params, request_id=request_id, route=route,
                                 max_tokens_field="max_tokens")


class OpenAIUsage(BaseModel):
    """OpenAI usage block."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The generated chat turn."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """One chat completion choice."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class _OpenAIObject(BaseModel):
    """The fields every OpenAI response object and stream chunk has, in OpenAI's order; each
    subclass narrows ``object`` and ``choices`` (pydantic keeps a redeclared field's place)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: OpenAIUsage | None = None
    guardit: GuarditInfo | None = None


class ChatCompletionResponse(_OpenAIObject):
    """``chat.completion``; ``guardit`` only for callers allowed to see the gate."""

    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: OpenAIUsage


class CompletionChoice(BaseModel):
    """One text completion choice."""

    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(_OpenAIObject):
    """``text_completion`` (also the stream chunk shape); ``guardit`` as in chat."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChunkDelta(BaseModel):
    """What a ``chat.completion.chunk`` adds."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """One streamed chat choice."""

    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(_OpenAIObject):
    """``chat.completion.chunk``; ``guardit`` rides on the first and the last chunk when shown."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class ModelCard(BaseModel):
    """One served model."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "guardit"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


def openai_usage(gen: Generation) -> OpenAIUsage:
    """OpenAI usage of a generation."""
    return OpenAIUsage(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                       total_tokens=gen.prompt_tokens + gen.completion_tokens)
