"""``GET /v1/audit``: the append-only log of registry changes (docs/SPEC.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

#: Largest ``offset``: SQL engines take a signed 64-bit integer.
MAX_OFFSET = 2**63 - 1
MAX_LIMIT = 1000


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
