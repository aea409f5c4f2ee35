"""Request and response models at the HTTP/CLI boundary (SPEC.md); converters to and from steering."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from service.generation import GenerationRequest
from steering import ConfigError, GateMatch, Generation, SamplingParams
from steering.recheck import with_answer


class ErrorBody(BaseModel):
    """The error object of every non-2xx response."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {"code", "message", "field"}}``."""

    error: ErrorBody


class MatchModel(BaseModel):
    """One open cluster."""

    forget_set_id: str
    cluster: int
    similarity: float


class GateResponse(BaseModel):
    """Which forget sets and clusters a prompt opens."""

    matched: list[MatchModel]
    steered: bool


class Usage(BaseModel):
    """Token counts."""

    prompt_tokens: int
    completion_tokens: int


class GuarditInfo(BaseModel):
    """What the gate decided for this response."""

    steered: bool
    matched: list[MatchModel]
    rechecked: bool = Field(False, description="the prompt left the gate closed, the prompt plus the "
                            "unsteered answer opened it, and this answer was generated again, steered")


class GenerateResponse(BaseModel):
    """A generation with its gate decision."""

    text: str
    finish_reason: Literal["stop", "length", "cancelled"]
    usage: Usage
    guardit: GuarditInfo


class CompareResponse(BaseModel):
    """The same request steered and unsteered, same seed."""

    steered: GenerateResponse
    unsteered: GenerateResponse
    matched: list[MatchModel]
    first_divergent_token: int | None


class ForgetSetResponse(BaseModel):
    """A forget set as GET returns it (every registry field)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    status: str
    n_documents: int
    n_clusters: int | None
    silhouette: float | None
    layer: int | None
    threshold: float | None
    alpha: float | None
    created_at: str
    activated_at: str | None
    error: str | None


def match_models(matches: tuple[GateMatch, ...] | list[GateMatch]) -> list[MatchModel]:
    """Gate matches as response objects, most similar first."""
    ordered = sorted(matches, key=lambda m: -m.similarity)
    return [MatchModel(forget_set_id=m.forget_set_id, cluster=m.cluster, similarity=round(m.similarity, 6))
            for m in ordered]


def gate_response(matches: list[GateMatch]) -> GateResponse:
    """``POST /v1/gate`` body."""
    return GateResponse(matched=match_models(matches), steered=bool(matches))


def generate_response(gen: Generation) -> GenerateResponse:
    """``POST /v1/generate`` body from a steering ``Generation``."""
    return GenerateResponse(
        text=gen.text,
        finish_reason=gen.finish_reason,  # type: ignore[arg-type]
        usage=Usage(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens),
        guardit=generation_info(gen),
    )


def first_divergence(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """Index of the first differing token of two generations; None when identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_response(steered: Generation, unsteered: Generation) -> CompareResponse:
    """``POST /v1/compare`` body."""
    return CompareResponse(
        steered=generate_response(steered),
        unsteered=generate_response(unsteered),
        matched=match_models(steered.matched),
        first_divergent_token=first_divergence(steered.token_ids, unsteered.token_ids),
    )


def forget_set_response(record_dict: dict[str, Any]) -> ForgetSetResponse:
    """A registry record (``to_dict()``) as a response."""
    return ForgetSetResponse(**record_dict)


class ForgetSetList(BaseModel):
    """``GET /v1/forget-sets``."""

    forget_sets: list[ForgetSetResponse] = Field(default_factory=list)


# -- generation requests (helper A) -------------------------------------------------------------
class TextPart(BaseModel):
    """A text part of an OpenAI-style multi-part message content."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn; ``content`` may be OpenAI's list of text parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]

    def as_dict(self) -> dict[str, str]:
        """``{"role", "content"}`` for the chat template (``developer`` is a system turn)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


Stop = str | list[str] | None
MAX_STOP_STRINGS = 16
DEFAULT_MAX_NEW_TOKENS = 128


def _stop_tuple(stop: Stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _check_stop(stop: Stop) -> Stop:
    items = _stop_tuple(stop)
    if len(items) > MAX_STOP_STRINGS:
        raise ValueError(f"expected at most {MAX_STOP_STRINGS} stop strings, found {len(items)}")
    if any(not s for s in items):
        raise ValueError("expected non-empty stop strings, found an empty one")
    return stop


class GenerateRequest(BaseModel):
    """``POST /v1/generate`` (and ``/v1/compare`` without ``stream``). There is no field that turns
    steering off: unknown fields are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="a user turn, rendered with the chat template")
    messages: list[ChatMessage] | None = Field(None, min_length=1, description="a chat")
    max_new_tokens: int | None = Field(None, ge=1, description="default 128, or the server's cap if lower")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Stop = None
    ignore_eos: bool = Field(False, description="never stop at end-of-sequence: always max_new_tokens "
                             "(benchmarks; as in vLLM)")
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Stop) -> Stop:
        return _check_stop(value)

    def to_request(self, *, request_id: str, route: str, cap: int) -> GenerationRequest:
        """The engine's request; a ``prompt`` becomes a single user turn. ``cap``: the server's
        ``max_new_tokens`` (the default never exceeds it; an explicit value above it is a 422)."""
        if (self.prompt is None) == (self.messages is None):
            found = "both" if self.prompt is not None else "neither"
            raise ConfigError(f"expected exactly one of prompt or messages, found {found}", field="prompt")
        chat = [{"role": "user", "content": self.prompt}] if self.prompt is not None else \
            [m.as_dict() for m in self.messages or []]
        limit = self.max_new_tokens if self.max_new_tokens is not None else min(DEFAULT_MAX_NEW_TOKENS, cap)
        params = SamplingParams(max_new_tokens=limit, temperature=self.temperature,
                                top_p=self.top_p, seed=self.seed, stop=_stop_tuple(self.stop),
                                ignore_eos=self.ignore_eos)
        return GenerationRequest(chat, params, request_id=request_id, route=route,
                                 prompt_field="prompt" if self.prompt is not None else "messages")


class CompareRequest(GenerateRequest):
    """``POST /v1/compare``: the generate body without ``stream``."""

    stream: Literal[False] = Field(False, exclude=True)


# -- OpenAI-compatible (helper A) ----------------------------------------------------------------
class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with usage."""

    include_usage: bool = False


class _OpenAIRequest(BaseModel):
    """Fields shared by chat and text completions; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Stop = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: always produce max_tokens

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Stop) -> Stop:
        return _check_stop(value)

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError(f"expected n = 1 (one choice per request), found {value}")
        return value

    def _params(self, max_tokens: int | None, default_max: int) -> SamplingParams:
        return SamplingParams(max_new_tokens=max_tokens if max_tokens is not None else default_max,
                              temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p, seed=self.seed,
                              stop=_stop_tuple(self.stop), ignore_eos=self.ignore_eos)


class ChatCompletionRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def to_request(self, *, request_id: str, route: str, cap: int) -> GenerationRequest:
        """The engine's request (temperature defaults to 1 as in OpenAI's API; ``cap`` as in
        ``GenerateRequest.to_request``)."""
        field = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        params = self._params(limit, min(DEFAULT_MAX_NEW_TOKENS, cap))
        return GenerationRequest([m.as_dict() for m in self.messages], params,
                                 request_id=request_id, route=route, prompt_field="messages",
                                 max_tokens_field=field)


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions``: ``prompt`` is raw text (no chat template)."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError(f"expected one prompt, found a list of {len(value)}")
        return value

    def to_request(self, *, request_id: str, route: str, cap: int) -> GenerationRequest:
        """The engine's request (max_tokens defaults to 16 as in OpenAI's API)."""
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        return GenerationRequest(prompt, self._params(self.max_tokens, min(16, cap)),
                                 request_id=request_id, route=route, max_tokens_field="max_tokens")


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


class ChatCompletionResponse(BaseModel):
    """``chat.completion`` plus the ``guardit`` gate decision."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: OpenAIUsage
    guardit: GuarditInfo


class CompletionChoice(BaseModel):
    """One text completion choice."""

    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(BaseModel):
    """``text_completion`` plus the ``guardit`` gate decision (also the stream chunk shape)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage | None = None
    guardit: GuarditInfo | None = None


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


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk``; ``guardit`` rides on the first and the last chunk."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: OpenAIUsage | None = None
    guardit: GuarditInfo | None = None


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


def guardit_info(steered: bool, matched: tuple[GateMatch, ...] | list[GateMatch],
                 rechecked: bool = False) -> GuarditInfo:
    """The ``guardit`` object of a response or chunk."""
    return GuarditInfo(steered=steered, matched=match_models(matched), rechecked=rechecked)


def generation_info(gen: Generation) -> GuarditInfo:
    """The ``guardit`` object of a finished generation."""
    return guardit_info(gen.steered, gen.matched, gen.rechecked)


def openai_usage(gen: Generation) -> OpenAIUsage:
    """OpenAI usage of a generation."""
    return OpenAIUsage(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                       total_tokens=gen.prompt_tokens + gen.completion_tokens)


# -- forget sets, audit, gate, health (helper B) -------------------------------------------------
def _utf8(value: str) -> str:
    # JSON may escape lone surrogates ("\ud800"): valid JSON, but not text any database or hash takes.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("expected valid Unicode text, found a lone surrogate escape") from exc
    return value


#: A string that encodes as UTF-8 (use for every text field that is stored, hashed or tokenized).
Text = Annotated[str, AfterValidator(_utf8)]


class QAItem(BaseModel):
    """One forget question with its answer."""

    model_config = ConfigDict(extra="forbid")

    question: Text = Field(min_length=1)
    answer: Text = Field(min_length=1)


class ForgetSetCreateRequest(BaseModel):
    """``POST /v1/forget-sets``: exactly one of ``documents`` and ``qa``; the build runs afterwards.

    Counts and lengths are checked against the server's limits (``GUARDIT_MAX_FORGET_DOCUMENTS``,
    ``GUARDIT_MAX_DOCUMENT_CHARS``) and ``layer`` against the model's depth before anything is stored.
    """

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    documents: list[Text] | None = Field(None, description="forget documents (plain text)")
    qa: list[QAItem] | None = Field(None, description="forget question/answer pairs")
    retain: list[Text] | None = Field(None, description="retain texts (default: a built-in neutral corpus)")
    reason: Text = Field(min_length=1, max_length=2000, description="why (audited)")
    requested_by: Text = Field(min_length=1, max_length=200, description="for whom (audited)")
    ticket: Text | None = Field(None, max_length=200, description="external reference (audited)")
    layer: int | None = Field(None, ge=0, description="decoder block to steer (default: first quartile)")
    threshold: float | None = Field(None, ge=-1.0, le=1.0, allow_inf_nan=False,
                                    description="gate threshold T")
    alpha: float | None = Field(None, ge=0.0, allow_inf_nan=False, description="redirection strength")

    def to_registration(self) -> Any:
        """The runtime's ``Registration`` (validated again there against the server's limits)."""
        from service.runtime import Registration  # lazy: keeps schemas importable without torch

        return Registration(
            name=self.name, documents=self.documents,
            qa=[(p.question, p.answer) for p in self.qa] if self.qa is not None else None,
            retain=self.retain, reason=self.reason, requested_by=self.requested_by, ticket=self.ticket,
            layer=self.layer, threshold=self.threshold, alpha=self.alpha)


class ForgetSetCreated(BaseModel):
    """The 202 of ``POST /v1/forget-sets``."""

    id: str
    status: str


class ForgetSetUpdateRequest(BaseModel):
    """``PATCH /v1/forget-sets/{id}``: any of ``threshold``, ``alpha``, ``enabled``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=-1.0, le=1.0, allow_inf_nan=False)
    alpha: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    enabled: bool | None = None
    reason: Text | None = Field(None, max_length=2000, description="why (audited)")


class AuditEntryModel(BaseModel):
    """One row of the append-only audit log."""

    id: int
    at: str
    actor: str
    action: str
    forget_set_id: str | None
    reason: str | None
    details: dict[str, Any]


class AuditResponse(BaseModel):
    """``GET /v1/audit``: rows oldest first."""

    entries: list[AuditEntryModel]
    limit: int
    offset: int


class GateRequest(BaseModel):
    """``POST /v1/gate``: a ``prompt`` (one user turn) or ``messages``."""

    model_config = ConfigDict(extra="forbid")

    prompt: Text | None = Field(None, min_length=1)
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    answer: Text | None = Field(None, min_length=1, description="an answer to the prompt: the decision the "
                                "answer re-check makes on the prompt followed by it")

    def to_prompt(self) -> str | list[dict[str, str]]:
        """What the gate embeds: the prompt text or the chat (with ``answer`` as an assistant turn)."""
        if (self.prompt is None) == (self.messages is None):
            found = "both" if self.prompt is not None else "neither"
            raise ConfigError(f"expected exactly one of prompt or messages, found {found}", field="prompt")
        if self.answer is not None:
            chat = [{"role": "user", "content": self.prompt}] if self.prompt is not None else \
                [m.as_dict() for m in self.messages or []]
            return with_answer(chat, self.answer)
        return self.prompt if self.prompt is not None else [m.as_dict() for m in self.messages or []]


class HealthResponse(BaseModel):
    """``GET /healthz`` and ``GET /readyz`` when healthy."""

    status: str
    model: str | None = None
    forget_sets_active: int | None = None
