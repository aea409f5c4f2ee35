"""Forget-set registry of the GUARD-IT service (arXiv 2605.12765): forget sets, their documents,
build artifacts (safetensors, by checksum) and an append-only audit log, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service import db_models as m
from service import migrations
from service.db_models import AuditEntry, ForgetSetRecord, StoredTexts, content_sha256
from steering.forget_set import ForgetDocuments, QAPair

if TYPE_CHECKING:
    import torch

__all__ = [
    "ArtifactCorruptError", "AuditEntry", "ForgetSetRecord", "InvalidInputError",
    "InvalidTransitionError", "NotFoundError", "Registry", "RegistryError", "SchemaVersionError",
    "StoredTexts", "content_sha256",
]

logger = logging.getLogger(__name__)

_PG_SCHEMA_LOCK_KEY = 0x6775617264  # serialises migrations between replicas that start at once
# Inside Registry the name ``list`` is a method, so its annotations use these aliases.
_Records: TypeAlias = list[ForgetSetRecord]
_Entries: TypeAlias = list[AuditEntry]
_Ids: TypeAlias = list[str]
_Row: TypeAlias = Row[Any]


class RegistryError(Exception):
    """Base class of every error the registry raises; messages say what was expected and found."""

    #: Name of the offending input field, when one is to blame (used by the HTTP layer).
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class NotFoundError(RegistryError):
    """A forget set, its documents or its artifacts do not exist (any more)."""


class InvalidTransitionError(RegistryError):
    """The forget set's status does not allow the requested operation."""


class ArtifactCorruptError(RegistryError):
    """A stored artifact blob does not match its checksum or is not valid safetensors."""


class InvalidInputError(RegistryError, ValueError):
    """An argument breaks a registry invariant (e.g. both or neither of documents and qa)."""


class SchemaVersionError(RegistryError):
    """The database was written by a newer guardit with a schema this code does not know."""


def _now() -> datetime:
    return datetime.now(UTC)


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _record(row: Row[Any]) -> ForgetSetRecord:
    return ForgetSetRecord(**row._mapping)


def _check_texts(values: Sequence[str], what: str, field: str) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"expected non-empty text for {what} {i}, found {value!r:.40}",
                                    field=field)


class Registry:
    """Forget sets and their audit trail in one SQL database (SQLite file or PostgreSQL).

    Every method runs in its own transaction; every change of a forget set goes through ``_apply``,
    which writes the audit row in that same transaction. Safe across threads, processes and replicas.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open the registry database, creating or migrating its tables (``service/migrations``).

        Args:
            url: SQLAlchemy URL; ``postgresql://`` is mapped to the psycopg 3 driver.
            echo: Log every SQL statement (debugging only: statements carry document text).
        """
        self._engine: Engine = m.make_engine(url, echo=echo)
        self._write_engine = self._engine.execution_options(guardit_begin="IMMEDIATE")  # SQLite only
        self.dialect: str = self._engine.dialect.name
        self.url: str = self._engine.url.render_as_string(hide_password=True)
        try:
            self._init_schema()
        except BaseException:
            self._engine.dispose()
            raise
        logger.info("registry opened at %s", self.url)

    def _init_schema(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK_KEY})
            try:
                migrations.upgrade(conn)
            except migrations.NewerSchemaError as exc:
                raise SchemaVersionError(str(exc)) from exc

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str | None = None) -> Registry:
        """Open the registry of ``data_dir``, creating the directory if missing.

        ``url`` (e.g. ``GUARDIT_DATABASE_URL``) overrides the default SQLite file ``<data_dir>/registry.db``.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(url or f"sqlite:///{data_dir.resolve() / 'registry.db'}")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @staticmethod
    def _audit(conn: Connection, fs_id: str, *, actor: str, action: str, at: datetime, reason: str | None,
               details: Mapping[str, Any]) -> None:
        conn.execute(insert(m.audit_log).values(
            at=at, actor=actor, action=action, forget_set_id=fs_id, reason=reason,
            details=json.dumps(dict(details), sort_keys=True, default=_json_default)))

    def _apply(self, conn: Connection, fs_id: str, *, actor: str, action: str, at: datetime,
               reason: str | None = None, details: Mapping[str, Any], **values: Any) -> ForgetSetRecord:
        """Update one forget set and append its audit row, in the caller's transaction."""
        conn.execute(update(m.forget_sets).where(m.forget_sets.c.id == fs_id).values(updated_at=at, **values))
        self._audit(conn, fs_id, actor=actor, action=action, at=at, reason=reason, details=details)
        return _record(self._fetch(conn, fs_id))

    @staticmethod
    def _fetch(conn: Connection, fs_id: str, *, lock: bool = False) -> Row[Any]:
        query = select(m.forget_sets).where(m.forget_sets.c.id == fs_id)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFoundError(f"expected a forget set with id {fs_id!r}, found none", field="id")
        return row

    @contextmanager
    def _locked(self, fs_id: str, allowed: Sequence[str], op: str) -> Iterator[tuple[Connection, _Row]]:
        """A write transaction holding the set's row, which must be in one of the ``allowed`` statuses."""
        with self._write() as conn:
            row = self._fetch(conn, fs_id, lock=True)
            if row.status not in allowed:
                raise InvalidTransitionError(
                    f"cannot {op} forget set {fs_id}: expected status {' or '.join(allowed)}, "
                    f"found {row.status}")
            yield conn, row

    def create(self, *, name: str, documents: list[str] | None, qa: list[tuple[str, str]] | None,
               retain: list[str] | None, reason: str, requested_by: str, ticket: str | None,
               layer: int | None, threshold: float | None, alpha: float | None, model_id: str,
               actor: str, subjects: Sequence[str] | None = None) -> ForgetSetRecord:
        """Register a forget set in status ``pending``, with its texts (kept until revoked).

        The texts come validated (``Runtime.validate``: limits, lengths, dedupe); what is checked here
        is only what the tables need (exactly one kind, no blank text), for any other writer. Read
        back, they are taken as they are (``StoredTexts.forget``).

        Args:
            name: Display name.
            documents: Forget documents; give exactly one of ``documents`` and ``qa``.
            qa: Forget (question, answer) pairs.
            retain: Retain documents for the build, or None.
            reason, requested_by, ticket: Why, for whom and under which reference (audited).
            layer, threshold, alpha: Overrides of the build defaults, or None.
            model_id: The LLM whose artifacts this set will hold.
            actor: Key id of the caller, e.g. ``cli:root`` or ``key:ab12``.
            subjects: Names the set protects, given explicitly (people or trigger names), or None.

        Returns:
            The new record.

        Raises:
            InvalidInputError: Both or neither of documents/qa, no forget text, or a blank text.
        """
        if (documents is None) == (qa is None):
            found = "neither" if documents is None else "both"
            raise InvalidInputError(f"expected exactly one of documents or qa, found {found}",
                                    field="documents")
        kind = "documents" if documents is not None else "qa"
        pairs = [(t, None) for t in documents] if documents is not None else [*(qa or ())]
        if not pairs:
            raise InvalidInputError("expected at least one forget document, found 0", field=kind)
        _check_texts([t for t, _ in pairs], "document" if qa is None else "question", kind)
        _check_texts(retain or [], "retain document", "retain")
        fs_id, now, digest = "fs_" + secrets.token_hex(6), _now(), content_sha256(documents, qa, retain)
        facts: dict[str, Any] = {
            "name": name, "doc_kind": kind, "n_documents": len(pairs), "n_retain": len(retain or ()),
            "content_sha256": digest, "model_id": model_id, "requested_by": requested_by, "ticket": ticket,
            "layer": layer, "threshold": threshold, "alpha": alpha}
        if subjects:
            _check_texts(list(subjects), "subject", "subjects")
            facts["subjects"] = json.dumps([s.strip() for s in subjects], ensure_ascii=False)
        rows = [{"kind": "forget", "position": i, "text": t, "answer": a} for i, (t, a) in enumerate(pairs)]
        rows += [{"kind": "retain", "position": i, "text": t, "answer": None}
                 for i, t in enumerate(retain or ())]
        with self._write() as conn:
            conn.execute(insert(m.forget_sets).values(id=fs_id, reason=reason, status="pending", enabled=True,
                                                      created_at=now, updated_at=now, attempts=0, **facts))
            conn.execute(insert(m.forget_documents), [{"forget_set_id": fs_id, **r} for r in rows])
            self._audit(conn, fs_id, actor=actor, action="create", at=now, reason=reason, details=facts)
            record = _record(self._fetch(conn, fs_id))
        logger.info("forget set %s created by %s: %d %s, %d retain", fs_id, actor, len(pairs), kind,
                    record.n_retain)
        return record

    def get(self, fs_id: str) -> ForgetSetRecord:
        """One forget set. Raises NotFoundError if the id is unknown."""
        with self._read() as conn:
            return _record(self._fetch(conn, fs_id))

    def list(self, *, status: str | None = None) -> _Records:
        """Forget sets, newest first, optionally only those in ``status``."""
        if status is not None and status not in m.STATUSES:
            raise InvalidInputError(f"expected status in {m.STATUSES}, found {status!r}", field="status")
        fs = m.forget_sets
        query = select(fs).order_by(fs.c.created_at.desc(), fs.c.id.desc())
        with self._read() as conn:
            rows = conn.execute(query if status is None else query.where(fs.c.status == status))
            return [_record(row) for row in rows]

    def documents(self, fs_id: str) -> StoredTexts:
        """The stored texts of a set. Raises NotFoundError if unknown or revoked (texts deleted)."""
        docs = m.forget_documents
        with self._read() as conn:
            row = self._fetch(conn, fs_id)
            rows = conn.execute(select(docs.c.kind, docs.c.text, docs.c.answer)
                                .where(docs.c.forget_set_id == fs_id).order_by(docs.c.position)).all()
        if row.status == "revoked":
            raise NotFoundError(f"expected documents of forget set {fs_id}, found none: deleted on revoke")
        forget = [r for r in rows if r.kind == "forget"]
        retain = tuple(r.text for r in rows if r.kind == "retain")
        if row.doc_kind == "qa":
            pairs = tuple(QAPair(r.text, r.answer or "") for r in forget)
            return StoredTexts(ForgetDocuments(qa=pairs), retain)
        return StoredTexts(ForgetDocuments(documents=tuple(r.text for r in forget)), retain)

    def claim_next_pending(self, *, actor: str = "system:builder") -> ForgetSetRecord | None:
        """Atomically move the oldest pending set to ``building`` (attempts + 1) for this worker.

        Exclusive across threads, processes and replicas: ``SELECT ... FOR UPDATE SKIP LOCKED`` on
        PostgreSQL, a ``BEGIN IMMEDIATE`` transaction on SQLite.

        Args:
            actor: Audit actor of the ``build_start`` row.

        Returns:
            The claimed record, or None if nothing is pending.
        """
        fs = m.forget_sets
        with self._read() as conn:  # cheap check first: no write lock while the queue is empty
            if conn.execute(select(fs.c.id).where(fs.c.status == "pending").limit(1)).first() is None:
                return None
        with self._write() as conn:
            oldest = (select(fs.c.id, fs.c.attempts).where(fs.c.status == "pending")
                      .order_by(fs.c.created_at, fs.c.id))
            row = conn.execute(oldest.limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            now, attempt = _now(), row.attempts + 1
            worker = {"attempt": attempt, "host": socket.gethostname(), "pid": os.getpid()}
            record = self._apply(conn, row.id, actor=actor, action="build_start", at=now, details=worker,
                                 status="building", attempts=attempt, build_started_at=now, error=None)
        logger.info("forget set %s claimed for build (attempt %d)", record.id, attempt)
        return record

    def activate(self, fs_id: str, *, artifacts: dict[str, torch.Tensor], layer: int, threshold: float,
                 alpha: float, n_clusters: int, silhouette: float | None, build_seconds: float,
                 actor: str, attempt: int | None = None) -> ForgetSetRecord:
        """Store the build artifacts and move the set from ``building`` to ``active``, in one transaction.

        Args:
            fs_id: The set being built.
            artifacts: Named tensors, moved to CPU and saved as one safetensors blob keyed by its SHA-256.
            layer: The layer the artifacts were built for.
            threshold, alpha: The values the build used; an override already on the record (given at
                create, or by ``update`` during the build) is kept instead.
            n_clusters, silhouette: The k chosen and its silhouette (None when k = 1).
            build_seconds: Wall time of the build.
            actor: Audit actor.
            attempt: The claim this build holds (``attempts`` of the claimed record), or None for any.

        Returns:
            The active record.

        Raises:
            InvalidTransitionError: The set is no longer ``building`` (e.g. revoked meanwhile), or it
                was requeued and claimed again since ``attempt``; then nothing is stored.
        """
        from safetensors.torch import save  # lazy: the CLI's registry commands need no torch

        if not artifacts:
            raise InvalidInputError("expected at least one artifact tensor, found none", field="artifacts")
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in artifacts.items()}
        blob = save(tensors, metadata={"forget_set_id": fs_id, "layer": str(layer)})
        digest = hashlib.sha256(blob).hexdigest()
        facts: dict[str, Any] = {"layer": layer, "n_clusters": n_clusters, "silhouette": silhouette,
                                 "build_seconds": build_seconds, "artifacts_sha256": digest}
        with self._locked(fs_id, ("building",), "activate") as (conn, row):
            self._check_claim(fs_id, row, attempt, "activate")
            now = _now()
            facts["threshold"] = threshold if row.threshold is None else row.threshold
            facts["alpha"] = alpha if row.alpha is None else row.alpha
            blob_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            values = {"sha256": digest, "data": blob, "size": len(blob), "created_at": now}
            conn.execute(blob_insert(m.artifacts).values(**values).on_conflict_do_nothing())
            record = self._apply(conn, fs_id, actor=actor, action="activate", at=now,
                                 details={**facts, "size": len(blob)}, status="active", activated_at=now,
                                 error=None, **facts)
        logger.info("forget set %s active: k=%d, %d bytes of artifacts", fs_id, n_clusters, len(blob))
        return record

    def fail(self, fs_id: str, *, error: str, actor: str, attempt: int | None = None) -> ForgetSetRecord:
        """Mark a ``pending`` or ``building`` set as ``failed`` with ``error``.

        ``attempt`` (the claim of a failing build) refuses the change with InvalidTransitionError when
        the set was requeued since: another claim's build, possibly on another replica, is running.
        """
        with self._locked(fs_id, m.UNBUILT, "fail") as (conn, row):
            self._check_claim(fs_id, row, attempt, "fail")
            record = self._apply(conn, fs_id, actor=actor, action="fail", at=_now(), status="failed",
                                 error=error, details={"from": row.status, "error": error[:1000]})
        logger.warning("forget set %s failed: %s", fs_id, error)
        return record

    @staticmethod
    def _check_claim(fs_id: str, row: _Row, attempt: int | None, op: str) -> None:
        # A build older than the stale limit is requeued and claimed again (attempts + 1) by another
        # worker; the first worker, slow rather than dead, must not then finish the set.
        if attempt is not None and (row.status != "building" or row.attempts != attempt):
            raise InvalidTransitionError(
                f"cannot {op} forget set {fs_id}: expected the build of attempt {attempt}, found status "
                f"{row.status} at attempt {row.attempts} (requeued and claimed again)")

    def update(self, fs_id: str, *, threshold: float | None = None, alpha: float | None = None,
               enabled: bool | None = None, actor: str, reason: str | None = None) -> ForgetSetRecord:
        """Change steering knobs of a ``pending``, ``building`` or ``active`` set.

        Args:
            fs_id: The set.
            threshold, alpha: New gate threshold or steering strength, or None to keep it.
            enabled: Turn steering for the set on or off, or None to keep it.
            actor: Audit actor.
            reason: Audited reason, or None.

        Returns:
            The record after the change (unchanged, and no audit row, if no value differs).
        """
        wanted = {"threshold": threshold, "alpha": alpha, "enabled": enabled}
        with self._locked(fs_id, m.UPDATABLE, "update") as (conn, row):
            changes = {k: v for k, v in wanted.items() if v is not None and v != getattr(row, k)}
            if not changes:
                return _record(row)
            record = self._apply(conn, fs_id, actor=actor, action="update", at=_now(), reason=reason,
                                 details={k: [getattr(row, k), v] for k, v in changes.items()}, **changes)
        logger.info("forget set %s updated by %s: %s", fs_id, actor, sorted(changes))
        return record

    def revoke(self, fs_id: str, *, reason: str, actor: str) -> ForgetSetRecord:
        """Revoke a set: it becomes ``revoked`` and its texts and (unshared) artifacts are deleted.

        The record, its content hash and the audit trail stay. Raises InvalidTransitionError if the
        set is already revoked.
        """
        fs, docs = m.forget_sets, m.forget_documents
        with self._locked(fs_id, m.REVOCABLE, "revoke") as (conn, row):
            n_docs = conn.execute(delete(docs).where(docs.c.forget_set_id == fs_id)).rowcount
            # Vectors and centroids derive from the forget text: they go too, unless another live set
            # holds the very same blob.
            sha, blob_deleted = row.artifacts_sha256, False
            if sha is not None and not conn.execute(select(func.count()).select_from(fs).where(
                    fs.c.artifacts_sha256 == sha, fs.c.id != fs_id, fs.c.status != "revoked")).scalar_one():
                deleted = conn.execute(delete(m.artifacts).where(m.artifacts.c.sha256 == sha))
                blob_deleted = deleted.rowcount > 0
            now = _now()
            details = {"from": row.status, "documents_deleted": n_docs, "artifacts_deleted": blob_deleted}
            record = self._apply(conn, fs_id, actor=actor, action="revoke", at=now, reason=reason,
                                 details=details, status="revoked", revoked_at=now, report=None)
        logger.info("forget set %s revoked by %s (%d texts deleted)", fs_id, actor, n_docs)
        return record

    def set_build_progress(self, fs_id: str, *, phase: str, fraction: float) -> None:
        """Record how far a build has come (no audit row: progress is not a change of the set).

        Args:
            fs_id: The set being built.
            phase: Short name of the build phase (``embed``, ``cluster``, ``vectors``, ``calibrate``, ...).
            fraction: Overall progress in [0, 1].
        """
        if not 0.0 <= fraction <= 1.0 or not math.isfinite(fraction):
            raise InvalidInputError(f"expected build progress in [0, 1], found {fraction}", field="fraction")
        with self._write() as conn:
            conn.execute(update(m.forget_sets).where(m.forget_sets.c.id == fs_id,
                                                     m.forget_sets.c.status == "building")
                         .values(build_phase=phase[:32], build_progress=fraction))

    def set_report(self, fs_id: str, report: Mapping[str, Any]) -> None:
        """Store the verification report of a set (replaces an earlier one; revocation deletes it)."""
        blob = json.dumps(report, ensure_ascii=False, default=_json_default)
        with self._write() as conn:
            found = conn.execute(update(m.forget_sets).where(m.forget_sets.c.id == fs_id,
                                                             m.forget_sets.c.status != "revoked")
                                 .values(report=blob)).rowcount
        if not found:
            raise NotFoundError(f"expected a forget set that is not revoked, found none with id {fs_id!r}")

    def get_report(self, fs_id: str) -> dict[str, Any] | None:
        """The stored verification report, or None while there is none. Raises NotFoundError."""
        record = self.get(fs_id)
        return dict(json.loads(record.report)) if record.report else None

    def load_artifacts(self, fs_id: str) -> dict[str, torch.Tensor]:
        """The set's artifact tensors (on CPU), after checking the blob's SHA-256.

        Raises:
            NotFoundError: Unknown set, or it has no (more) artifacts.
            ArtifactCorruptError: The blob does not match its checksum or does not parse.
        """
        from safetensors.torch import load

        with self._read() as conn:
            row = self._fetch(conn, fs_id)
            query = select(m.artifacts.c.data).where(m.artifacts.c.sha256 == row.artifacts_sha256)
            blob = None if row.artifacts_sha256 is None else conn.execute(query).scalar_one_or_none()
        if blob is None:
            raise NotFoundError(
                f"expected artifacts for forget set {fs_id}, found none (status {row.status})")
        data = bytes(blob)
        found = hashlib.sha256(data).hexdigest()
        if found != row.artifacts_sha256:
            raise ArtifactCorruptError(
                f"artifacts of forget set {fs_id}: expected sha256 {row.artifacts_sha256}, found {found}")
        try:
            return load(data)
        except Exception as exc:  # safetensors raises its own error types on a bad header
            raise ArtifactCorruptError(
                f"artifacts of forget set {fs_id}: expected a safetensors blob, found unparseable data "
                f"({exc})") from exc

    def active_sets(self) -> _Records:
        """Sets in status ``active``, enabled or not (the caller filters), newest first."""
        return self.list(status="active")

    def recover_interrupted(self, *, actor: str, max_attempts: int = 3, stale_after_s: float = 0.0) -> _Ids:
        """Requeue builds a crash left in ``building``, or fail them once ``max_attempts`` claims are used.

        Args:
            actor: Audit actor.
            max_attempts: A set claimed this often goes to ``failed`` instead of ``pending``.
            stale_after_s: Only touch builds started at least this long ago. With several replicas,
                set it above the longest build so that a live build elsewhere is left alone.

        Returns:
            Ids of the sets touched.
        """
        fs, now = m.forget_sets, _now()
        touched: _Ids = []
        with self._write() as conn:
            rows = conn.execute(select(fs.c.id, fs.c.attempts, fs.c.build_started_at).where(
                fs.c.status == "building", fs.c.build_started_at <= now - timedelta(seconds=stale_after_s))
                .order_by(fs.c.created_at).with_for_update(skip_locked=True)).all()
            for row in rows:
                details = {"from": "building", "attempts": row.attempts, "started": row.build_started_at}
                reason = "interrupted build"
                if row.attempts < max_attempts:
                    self._apply(conn, row.id, actor=actor, action="recover", at=now, reason=reason,
                                details={**details, "to": "pending"}, status="pending")
                else:
                    error = f"interrupted: build did not finish after {row.attempts} attempts"
                    self._apply(conn, row.id, actor=actor, action="fail", at=now, reason=reason,
                                details={**details, "to": "failed"}, status="failed", error=error)
                touched.append(row.id)
        if touched:
            logger.warning("recovered %d interrupted builds: %s", len(touched), touched)
        return touched

    def audit(self, *, forget_set_id: str | None = None, limit: int = 100, offset: int = 0) -> _Entries:
        """Audit rows, oldest first, optionally only those of one forget set."""
        if limit < 0 or offset < 0:
            raise InvalidInputError(f"expected limit and offset >= 0, found {limit} and {offset}",
                                    field="limit")
        query = select(m.audit_log).order_by(m.audit_log.c.id).limit(limit).offset(offset)
        if forget_set_id is not None:
            query = query.where(m.audit_log.c.forget_set_id == forget_set_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(**{**row._mapping, "details": json.loads(row.details)}) for row in rows]

    def change_token(self) -> int:
        """A number that grows with every committed registry change; replicas poll it.

        This is the audit row count, not the max id: PostgreSQL assigns ids before
        commit, so a later commit can add a smaller id after a poll has seen a larger one. Audit rows
        are never deleted, so the count only grows.
        """
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(m.audit_log)).scalar_one())

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
