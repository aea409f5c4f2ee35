"""Request and response models at the HTTP/CLI boundary (SPEC.md); converters to and from steering."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from steering import GateMatch, Generation


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
        guardit=GuarditInfo(steered=gen.steered, matched=match_models(gen.matched)),
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
