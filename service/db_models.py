"""Storage layer of the GUARD-IT (arXiv 2605.12765) forget-set registry: SQLAlchemy Core tables,
the record value objects read from them, and engine setup for SQLite and PostgreSQL.

The tables here describe the current schema for queries; the database gets it from the Alembic
revisions in ``service/migrations/`` (a schema change is a new revision plus the edit here, and
``tests/service/test_migrations.py`` checks that both agree). The audit log's append-only triggers
are created by revision 0001.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

from steering import forget_set

#: A forget set's life: pending -> building -> active, or failed; revoked from any of them.
Status = Literal["pending", "building", "active", "failed", "revoked"]
STATUSES: tuple[Status, ...] = get_args(Status)
#: Not built yet: a build may still start, finish or fail.
UNBUILT: tuple[Status, ...] = ("pending", "building")
#: Settings (threshold, alpha, enabled) may change until the set fails or is revoked.
UPDATABLE: tuple[Status, ...] = (*UNBUILT, "active")
#: Every status but revoked can be revoked.
REVOCABLE: tuple[Status, ...] = (*UPDATABLE, "failed")
#: A build ends in one of these (what ``forget add --wait`` waits for).
FINAL: frozenset[Status] = frozenset({"active", "failed", "revoked"})
ACTIONS = ("create", "build_start", "activate", "fail", "update", "revoke", "recover")
DOC_KINDS = ("documents", "qa")
DOCUMENT_KINDS = ("forget", "retain")
SQLITE_BUSY_TIMEOUT_MS = 15_000


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is written as UTC and always read back timezone-aware.

    SQLite keeps no offset, so values are normalised to UTC on the way in and tagged on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, found naive {value.isoformat()}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers always parse
            raise TypeError(f"expected datetime from the database, found {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stable constraint names so that later migrations can address them on both backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

forget_sets = Table(
    "forget_sets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("ticket", Text, nullable=True),
    Column("status", String(16), nullable=False, index=True),
    Column("enabled", Boolean(create_constraint=True, name="enabled_bool"), nullable=False, default=True),
    Column("layer", Integer, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("alpha", Float, nullable=True),
    Column("n_clusters", Integer, nullable=True),
    Column("silhouette", Float, nullable=True),
    Column("n_documents", Integer, nullable=False),
    Column("n_retain", Integer, nullable=False),
    Column("doc_kind", String(16), nullable=False),
    Column("content_sha256", String(64), nullable=False, index=True),
    Column("model_id", Text, nullable=False),
    Column("artifacts_sha256", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("activated_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("build_started_at", UTCDateTime, nullable=True),
    Column("build_seconds", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    # Build progress (phase name, fraction in [0, 1]), the names the set protects as given at
    # registration (JSON list), and the verification report stored when the set became active (JSON).
    Column("build_phase", String(32), nullable=True),
    Column("build_progress", Float, nullable=True),
    Column("subjects", Text, nullable=True),
    Column("report", Text, nullable=True),
    CheckConstraint(_in("status", STATUSES), name="status"),
    CheckConstraint(_in("doc_kind", DOC_KINDS), name="doc_kind"),
)

forget_documents = Table(
    "forget_documents",
    metadata,
    Column("forget_set_id", String(32), ForeignKey("forget_sets.id"), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("position", Integer, primary_key=True),
    # A document's text, or the question of a QA pair (then ``answer`` is set).
    Column("text", Text, nullable=False),
    Column("answer", Text, nullable=True),
    CheckConstraint(_in("kind", DOCUMENT_KINDS), name="kind"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("forget_set_id", String(32), nullable=True, index=True),
    Column("reason", Text, nullable=True),
    Column("details", Text, nullable=False, default="{}"),
    CheckConstraint(_in("action", ACTIONS), name="action"),
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ForgetSetRecord:
    """One row of ``forget_sets``; timestamps are timezone-aware UTC."""

    id: str
    name: str
    reason: str
    requested_by: str
    ticket: str | None
    status: str
    enabled: bool
    layer: int | None
    threshold: float | None
    alpha: float | None
    n_clusters: int | None
    silhouette: float | None
    n_documents: int
    n_retain: int
    doc_kind: str
    content_sha256: str
    model_id: str
    artifacts_sha256: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    revoked_at: datetime | None
    build_started_at: datetime | None
    build_seconds: float | None
    attempts: int
    build_phase: str | None = None
    build_progress: float | None = None
    #: JSON list of names given at registration (see ``subject_names``).
    subjects: str | None = None
    #: JSON verification report (see ``Registry.get_report``); left out of ``to_dict``.
    report: str | None = None

    @property
    def subject_names(self) -> list[str]:
        """The subjects or trigger names given at registration (empty when none were given)."""
        return list(json.loads(self.subjects)) if self.subjects else []

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-safe value (ISO 8601 timestamps, non-finite floats as None)."""
        out = {f.name: _json_safe(getattr(self, f.name)) for f in fields(self) if f.name != "report"}
        out["subjects"] = self.subject_names
        out["has_report"] = self.report is not None
        return out


@dataclass(frozen=True)
class StoredTexts:
    """The stored texts of a forget set: its forget documents, as validated at registration (the
    builder takes them as they are), and its retain texts."""

    forget: forget_set.ForgetDocuments
    retain: tuple[str, ...]


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only ``audit_log``."""

    id: int
    at: datetime
    actor: str
    action: str
    forget_set_id: str | None
    reason: str | None
    details: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-safe value (ISO 8601 timestamp, details as an object)."""
        out = {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}
        out["details"] = dict(self.details)
        return out


def content_sha256(
    documents: Sequence[str] | None, qa: Sequence[tuple[str, str]] | None, retain: Sequence[str] | None
) -> str:
    """SHA-256 of the canonical JSON of a forget set's texts.

    Canonical form: ``{"doc_kind": "documents"|"qa", "forget": [str | {"answer", "question"}],
    "retain": [str]}`` with sorted keys, no whitespace, UTF-8 (``ensure_ascii=False``).

    Args:
        documents: Forget documents, or None for a QA set.
        qa: Forget (question, answer) pairs, or None for a document set.
        retain: Retain documents (None is the same as empty).

    Returns:
        The hex digest.
    """
    pairs = [{"question": q, "answer": a} for q, a in qa or ()]
    forget: list[Any] = [*documents] if documents is not None else pairs
    kind = "qa" if documents is None else "documents"
    payload = {"doc_kind": kind, "forget": forget, "retain": [*(retain or ())]}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def normalize_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` URLs to the psycopg 3 driver; others pass as is."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # The driver must not emit BEGIN itself: _sqlite_on_begin does, so that writers can take the
    # write lock up front (BEGIN IMMEDIATE) instead of failing to upgrade a read lock under contention.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("guardit_begin", "DEFERRED"))


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (normalised); SQLite gets WAL, busy_timeout and foreign keys.

    On SQLite, a connection with execution option ``guardit_begin="IMMEDIATE"`` opens its
    transactions with ``BEGIN IMMEDIATE`` (takes the write lock at once).
    """
    sa_url = make_url(normalize_url(url))
    is_sqlite = sa_url.get_backend_name() == "sqlite"
    engine = create_engine(sa_url, echo=echo, pool_pre_ping=not is_sqlite)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine
