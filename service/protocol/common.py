"""Pieces every protocol module shares: the error body, strict request models, safe text, chat
messages, stop strings, gate matches and the ``guardit`` object (GUARD-IT, arXiv 2605.12765)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from steering import GateMatch, Generation
from steering.config import MAX_ALPHA, check_alpha, check_threshold
from steering.errors import ConfigError

#: Upper bound of a forget set's redirection strength; the calibrated strengths are 0.2-0.3 and
#: answers collapse into repetition from 0.5, so anything above this is a typo, not a setting.
MAX_STOP_STRINGS = 16
#: Most chat turns in one request (the character cap bounds their total length).
MAX_MESSAGES = 1024


class ErrorBody(BaseModel):
    """The error object of every non-2xx response."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {"code", "message", "field"}}``."""

    error: ErrorBody


class RequestModel(BaseModel):
    """Base of every request body: strict types (``true`` is not 1.0, ``"3"`` is not 3), no unknown
    fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _utf8(value: str) -> str:
    # JSON may escape lone surrogates ("\ud800"): valid JSON, but not text a tokenizer, a database
    # or a hash takes. The body parser refuses them first; this guards models built in code.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("expected valid Unicode text, found a lone surrogate escape") from exc
    return value


def _threshold(value: float) -> float:
    try:
        return check_threshold(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


def _alpha(value: float) -> float:
    try:
        return check_alpha(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


#: Smallest non-zero temperature and top_p: below them the float32 sampler divides by zero or keeps
#: no token at all (a 500, not a sharper distribution); 0 stays greedy.
MIN_TEMPERATURE = 1e-3
MIN_TOP_P = 1e-6


def _temperature(value: float) -> float:
    if 0.0 < value < MIN_TEMPERATURE:
        raise ValueError(f"expected temperature 0 (greedy) or in [{MIN_TEMPERATURE:g}, 2], found {value!r}")
    return value


#: 0 (greedy) or a sampling temperature in [MIN_TEMPERATURE, 2].
Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False, json_schema_extra={
    "not": {"exclusiveMinimum": 0.0, "exclusiveMaximum": MIN_TEMPERATURE}}), AfterValidator(_temperature)]
#: Nucleus mass in [MIN_TOP_P, 1].
TopP = Annotated[float, Field(ge=MIN_TOP_P, le=1.0, allow_inf_nan=False)]
#: A string that encodes as UTF-8 (every text field that is stored, hashed or tokenized).
Text = Annotated[str, AfterValidator(_utf8)]
#: A gate threshold T, checked by ``steering.config.check_threshold`` (the bounds live there).
Threshold = Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False, description="gate threshold T"),
                      AfterValidator(_threshold)]
#: A redirection strength, checked by ``steering.config.check_alpha`` (at most ``MAX_ALPHA``).
Alpha = Annotated[float, Field(ge=0.0, le=MAX_ALPHA, allow_inf_nan=False, description="redirection strength"),
                  AfterValidator(_alpha)]


class TextPart(RequestModel):
    """A text part of an OpenAI-style multi-part message content."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: Text


class ChatMessage(RequestModel):
    """One chat turn; ``content`` may be OpenAI's list of text parts."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(min_length=1, max_length=MAX_MESSAGES)]

    @property
    def text(self) -> str:
        """The content as one string."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def as_dict(self) -> dict[str, str]:
        """``{"role", "content"}`` for the chat template (``developer`` is a system turn)."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text}


Messages = Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
Stop = Text | Annotated[list[Text], Field(max_length=MAX_STOP_STRINGS)] | None


def stop_tuple(stop: Stop) -> tuple[str, ...]:
    """``stop`` as a tuple of strings."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def check_stop(stop: Stop) -> Stop:
    """Refuse empty stop strings (they would end every generation at once)."""
    if any(not s for s in stop_tuple(stop)):
        raise ValueError("expected non-empty stop strings, found an empty one")
    return stop


def check_prompt_chars(chars: int, limit: int, field: str) -> None:
    """The character cap checked before tokenization, so a huge prompt is refused in microseconds.

    Raises:
        ConfigError: 422 naming ``field`` when ``chars`` exceeds ``limit``.
    """
    if chars > limit:
        raise ConfigError(f"expected at most {limit} characters in {field}, found {chars}", field=field)


def one_of_prompt_or_messages(prompt: object, messages: object) -> None:
    """Exactly one of ``prompt`` and ``messages`` (the OpenAPI document states it as ``oneOf``)."""
    if (prompt is None) == (messages is None):
        found = "both" if prompt is not None else "neither"
        raise ConfigError(f"expected exactly one of prompt or messages, found {found}", field="prompt")


#: ``json_schema_extra`` of a body that takes exactly one of ``prompt`` and ``messages``.
ONE_OF_PROMPT_MESSAGES: dict[str, Any] = {
    "oneOf": [{"required": ["prompt"], "not": {"required": ["messages"]}},
              {"required": ["messages"], "not": {"required": ["prompt"]}}]}


class MatchModel(BaseModel):
    """One open cluster."""

    forget_set_id: str
    cluster: int
    similarity: float


class Usage(BaseModel):
    """Token counts."""

    prompt_tokens: int
    completion_tokens: int


class GuarditInfo(BaseModel):
    """What the gate decided for this response (shown to ``compare``/``admin`` callers only)."""

    steered: bool
    matched: list[MatchModel]
    rechecked: bool = Field(False, description="the prompt left the gate closed, the prompt plus the "
                            "unsteered answer opened it, and this answer was generated again, steered")
    abstained: bool = Field(False, description="the server declined to answer this prompt")
    abstain_reason: str | None = Field(None, description="why it declined, when it did")


def match_models(matches: tuple[GateMatch, ...] | list[GateMatch]) -> list[MatchModel]:
    """Gate matches as response objects, most similar first (similarities finite, 6 decimals)."""
    ordered = sorted(matches, key=lambda m: -m.similarity)
    return [MatchModel(forget_set_id=m.forget_set_id, cluster=m.cluster,
                       similarity=round(m.similarity, 6) if math.isfinite(m.similarity) else 0.0)
            for m in ordered]


def guardit_info(decision: Any) -> GuarditInfo:
    """The ``guardit`` object of a finished ``Generation`` or a stream's gate event; fields the
    engine does not report yet read as their defaults."""
    reason = getattr(decision, "abstain_reason", None)
    return GuarditInfo(steered=bool(decision.steered), matched=match_models(decision.matched),
                       rechecked=bool(getattr(decision, "rechecked", False)),
                       abstained=bool(getattr(decision, "abstained", False)),
                       abstain_reason=str(reason) if reason is not None else None)


def generation_info(gen: Generation) -> GuarditInfo:
    """The ``guardit`` object of a finished generation."""
    return guardit_info(gen)


class HealthResponse(BaseModel):
    """``GET /healthz`` and ``GET /readyz`` when healthy."""

    status: str
    model: str | None = None
    forget_sets_active: int | None = None
