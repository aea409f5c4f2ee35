"""Schema 1: forget sets, their documents, artifacts by checksum and the append-only audit log.

A frozen snapshot: later changes go into later revisions, so the value lists of the CHECK constraints
are spelled out here as they were (the live lists are in ``service/db_models.py``). Names follow the
metadata's naming convention, as the tables created before migrations existed have them.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True)
_STATUSES = "'pending', 'building', 'active', 'failed', 'revoked'"
_ACTIONS = "'create', 'build_start', 'activate', 'fail', 'update', 'revoke', 'recover'"

# The database itself refuses UPDATE and DELETE on the audit log, so that a bug (or a hand-written
# SQL statement) cannot rewrite history.
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    for verb in ("UPDATE", "DELETE")
]
_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
    "ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "forget_sets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("ticket", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(create_constraint=True, name=op.f("ck_forget_sets_enabled_bool")),
                  nullable=False),
        sa.Column("layer", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=True),
        sa.Column("n_clusters", sa.Integer(), nullable=True),
        sa.Column("silhouette", sa.Float(), nullable=True),
        sa.Column("n_documents", sa.Integer(), nullable=False),
        sa.Column("n_retain", sa.Integer(), nullable=False),
        sa.Column("doc_kind", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("artifacts_sha256", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("activated_at", _TIMESTAMP, nullable=True),
        sa.Column("revoked_at", _TIMESTAMP, nullable=True),
        sa.Column("build_started_at", _TIMESTAMP, nullable=True),
        sa.Column("build_seconds", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forget_sets")),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_forget_sets_status")),
        sa.CheckConstraint("doc_kind IN ('documents', 'qa')", name=op.f("ck_forget_sets_doc_kind")),
    )
    for column in ("status", "created_at", "content_sha256"):
        op.create_index(op.f(f"ix_forget_sets_{column}"), "forget_sets", [column])
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _TIMESTAMP, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("forget_set_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.CheckConstraint(f"action IN ({_ACTIONS})", name=op.f("ck_audit_log_action")),
    )
    op.create_index(op.f("ix_audit_log_forget_set_id"), "audit_log", ["forget_set_id"])
    op.create_table(
        "forget_documents",
        sa.Column("forget_set_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("forget_set_id", "kind", "position", name=op.f("pk_forget_documents")),
        sa.CheckConstraint("kind IN ('forget', 'retain')", name=op.f("ck_forget_documents_kind")),
        sa.ForeignKeyConstraint(["forget_set_id"], ["forget_sets.id"],
                                name=op.f("fk_forget_documents_forget_set_id_forget_sets")),
    )
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    for table in ("forget_documents", "audit_log", "artifacts", "forget_sets"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
