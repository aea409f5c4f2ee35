"""``/v1/forget-sets`` bodies and responses: register, list, inspect, tune and revoke GUARD-IT forget
sets (arXiv 2605.12765; docs/SPEC.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from service.protocol.common import Alpha, RequestModel, Text, Threshold

if TYPE_CHECKING:
    from service.runtime import Registration

#: Most subject names one forget set may give.
MAX_SUBJECTS = 64


class QAItem(RequestModel):
    """One forget question with its answer."""

    question: Text = Field(min_length=1)
    answer: Text = Field(min_length=1)


class ForgetSetCreateRequest(RequestModel):
    """``POST /v1/forget-sets``: exactly one of ``documents`` and ``qa``; the build runs afterwards.

    Counts and lengths are checked against the server's limits (``GUARDIT_MAX_FORGET_DOCUMENTS``,
    ``GUARDIT_MAX_DOCUMENT_CHARS``) and ``layer`` against the model's depth before anything is stored.
    """

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "oneOf": [{"required": ["documents"], "not": {"required": ["qa"]}},
                  {"required": ["qa"], "not": {"required": ["documents"]}}]})

    name: Text = Field(min_length=1, max_length=200)
    documents: list[Text] | None = Field(None, description="forget documents (plain text)")
    qa: list[QAItem] | None = Field(None, description="forget question/answer pairs")
    retain: list[Text] | None = Field(None, description="retain texts (default: a built-in neutral corpus)")
    reason: Text = Field(min_length=1, max_length=2000, description="why (audited)")
    requested_by: Text = Field(min_length=1, max_length=200, description="for whom (audited)")
    ticket: Text | None = Field(None, max_length=200, description="external reference (audited)")
    subjects: list[Text] | None = Field(
        None, max_length=MAX_SUBJECTS, description="names the set protects (people or trigger names); "
        "default: mined from the documents")
    layer: int | None = Field(None, ge=0, description="decoder block to steer (default: first quartile)")
    threshold: Threshold | None = None
    alpha: Alpha | None = None

    def to_registration(self) -> Registration:
        """The runtime's ``Registration`` (validated there against the server's limits)."""
        from service.runtime import Registration  # lazy: keeps the protocol importable without torch

        return Registration(
            name=self.name, documents=self.documents,
            qa=[(p.question, p.answer) for p in self.qa] if self.qa is not None else None,
            retain=self.retain, reason=self.reason, requested_by=self.requested_by, ticket=self.ticket,
            layer=self.layer, threshold=self.threshold, alpha=self.alpha, subjects=tuple(self.subjects or ()))


class ForgetSetCreated(BaseModel):
    """The 202 of ``POST /v1/forget-sets``."""

    id: str
    status: str


class ForgetSetUpdateRequest(RequestModel):
    """``PATCH /v1/forget-sets/{id}``: any of ``threshold``, ``alpha``, ``enabled``, and an audited
    ``reason``."""

    threshold: Threshold | None = None
    alpha: Alpha | None = None
    enabled: bool | None = None
    reason: Text | None = Field(None, min_length=1, max_length=2000, description="why (audited)")


class ForgetSetResponse(BaseModel):
    """A forget set as GET returns it (every registry field; never its texts)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    status: str
    enabled: bool
    n_documents: int
    n_clusters: int | None
    silhouette: float | None
    layer: int | None
    threshold: float | None
    alpha: float | None
    created_at: str
    activated_at: str | None
    error: str | None
    subjects: list[str] = Field(default_factory=list, description="names given at registration")
    build_phase: str | None = Field(None, description="the build's current phase while building")
    build_progress: float | None = Field(None, description="the build's progress in [0, 1] while building")


class ForgetSetList(BaseModel):
    """``GET /v1/forget-sets``."""

    forget_sets: list[ForgetSetResponse] = Field(default_factory=list)


def forget_set_response(record_dict: dict[str, Any]) -> ForgetSetResponse:
    """A registry record (``to_dict()``) as a response."""
    return ForgetSetResponse(**record_dict)
