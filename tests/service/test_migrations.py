"""Registry migrations (``service/migrations``) on real SQLite and PostgreSQL databases.

A database written before migrations existed is built here the way that code built it: the DDL its
``create_all`` emitted (schema 1: the current tables without ``build_phase``, ``build_progress``,
``subjects`` and ``report``), the append-only triggers, a ``schema_version`` row, and rows written by
hand. Opening a Registry on it must keep every row and end at the newest revision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from safetensors.torch import save
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from service import migrations
from service.db_models import make_engine, metadata
from service.registry import Registry, SchemaVersionError

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NEW_COLUMNS = {"build_phase", "build_progress", "subjects", "report"}

_TIME = {"sqlite": "DATETIME", "postgresql": "TIMESTAMP WITH TIME ZONE"}
_BLOB = {"sqlite": "BLOB", "postgresql": "BYTEA"}
_SERIAL = {"sqlite": "INTEGER", "postgresql": "SERIAL"}


def schema_1_ddl(dialect: str) -> list[str]:
    """The statements the pre-migration code ran on an empty database (schema 1)."""
    ts, blob = _TIME[dialect], _BLOB[dialect]
    enabled_check = ", CONSTRAINT ck_forget_sets_enabled_bool CHECK (enabled IN (0, 1))" if dialect == "sqlite" else ""
    statements = [
        f"CREATE TABLE schema_version (id INTEGER NOT NULL, version INTEGER NOT NULL, applied_at {ts} NOT NULL, "
        "CONSTRAINT pk_schema_version PRIMARY KEY (id), CONSTRAINT ck_schema_version_single_row CHECK (id = 1))",
        "CREATE TABLE forget_sets (id VARCHAR(32) NOT NULL, name TEXT NOT NULL, reason TEXT NOT NULL, "
        "requested_by TEXT NOT NULL, ticket TEXT, status VARCHAR(16) NOT NULL, enabled BOOLEAN NOT NULL, "
        "layer INTEGER, threshold FLOAT, alpha FLOAT, n_clusters INTEGER, silhouette FLOAT, "
        "n_documents INTEGER NOT NULL, n_retain INTEGER NOT NULL, doc_kind VARCHAR(16) NOT NULL, "
        "content_sha256 VARCHAR(64) NOT NULL, model_id TEXT NOT NULL, artifacts_sha256 VARCHAR(64), error TEXT, "
        f"created_at {ts} NOT NULL, updated_at {ts} NOT NULL, activated_at {ts}, revoked_at {ts}, "
        f"build_started_at {ts}, build_seconds FLOAT, attempts INTEGER NOT NULL, "
        "CONSTRAINT pk_forget_sets PRIMARY KEY (id), "
        "CONSTRAINT ck_forget_sets_status CHECK (status IN ('pending', 'building', 'active', 'failed', 'revoked')), "
        f"CONSTRAINT ck_forget_sets_doc_kind CHECK (doc_kind IN ('documents', 'qa')){enabled_check})",
        "CREATE INDEX ix_forget_sets_status ON forget_sets (status)",
        "CREATE INDEX ix_forget_sets_created_at ON forget_sets (created_at)",
        "CREATE INDEX ix_forget_sets_content_sha256 ON forget_sets (content_sha256)",
        f"CREATE TABLE artifacts (sha256 VARCHAR(64) NOT NULL, data {blob} NOT NULL, size INTEGER NOT NULL, "
        f"created_at {ts} NOT NULL, CONSTRAINT pk_artifacts PRIMARY KEY (sha256))",
        f"CREATE TABLE audit_log (id {_SERIAL[dialect]} NOT NULL, at {ts} NOT NULL, actor TEXT NOT NULL, "
        "action VARCHAR(16) NOT NULL, forget_set_id VARCHAR(32), reason TEXT, details TEXT NOT NULL, "
        "CONSTRAINT pk_audit_log PRIMARY KEY (id), CONSTRAINT ck_audit_log_action CHECK (action IN ('create', "
        "'build_start', 'activate', 'fail', 'update', 'revoke', 'recover')))",
        "CREATE INDEX ix_audit_log_forget_set_id ON audit_log (forget_set_id)",
        "CREATE TABLE forget_documents (forget_set_id VARCHAR(32) NOT NULL, kind VARCHAR(8) NOT NULL, "
        "position INTEGER NOT NULL, text TEXT NOT NULL, answer TEXT, "
        "CONSTRAINT pk_forget_documents PRIMARY KEY (forget_set_id, kind, position), "
        "CONSTRAINT ck_forget_documents_kind CHECK (kind IN ('forget', 'retain')), "
        "CONSTRAINT fk_forget_documents_forget_set_id_forget_sets FOREIGN KEY(forget_set_id) "
        "REFERENCES forget_sets (id))",
    ]
    if dialect == "sqlite":
        statements += [f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END" for verb in ("UPDATE", "DELETE")]
    else:
        statements += [
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ]
    return statements


T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
ARTIFACT = save({"centroids": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, metadata={"layer": "5"})
ARTIFACT_SHA = hashlib.sha256(ARTIFACT).hexdigest()
SETS = [  # (id, name, status, doc_kind, artifacts_sha256)
    ("fs_000000000001", "jane-doe", "active", "qa", ARTIFACT_SHA),
    ("fs_000000000002", "old-news", "failed", "documents", None),
]
DOCUMENTS = [  # (forget_set_id, kind, position, text, answer)
    ("fs_000000000001", "forget", 0, "Where was Jane Doe born?", "In Oslo."),
    ("fs_000000000001", "forget", 1, "What did Jane Doe write?", "The Fjord."),
    ("fs_000000000001", "retain", 0, "Oslo is in Norway.", None),
    ("fs_000000000002", "forget", 0, "A headline nobody may repeat.", None),
]
AUDIT = [  # (actor, action, forget_set_id, reason, details)
    ("key:ab12", "create", "fs_000000000001", "GDPR art. 17", {"name": "jane-doe"}),
    ("system:builder", "build_start", "fs_000000000001", None, {}),
    ("system:builder", "activate", "fs_000000000001", None, {"layer": 5, "artifacts_sha256": ARTIFACT_SHA}),
    ("key:ab12", "create", "fs_000000000002", "court order", {}),
    ("system:builder", "fail", "fs_000000000002", None, {"error": "out of memory"}),
]


def write_schema_1(engine: Engine, *, version: int = 1) -> None:
    """A schema-1 database with two forget sets, their documents, an artifact and five audit rows."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        for statement in schema_1_ddl(dialect):
            conn.exec_driver_sql(statement)
        conn.execute(text("INSERT INTO schema_version (id, version, applied_at) VALUES (1, :v, :t)"),
                     {"v": version, "t": T0})
        for fs_id, name, status, kind, sha in SETS:
            conn.execute(text(
                "INSERT INTO forget_sets (id, name, reason, requested_by, ticket, status, enabled, layer, "
                "threshold, alpha, n_clusters, silhouette, n_documents, n_retain, doc_kind, content_sha256, "
                "model_id, artifacts_sha256, error, created_at, updated_at, activated_at, revoked_at, "
                "build_started_at, build_seconds, attempts) VALUES (:id, :name, 'reason', 'legal', 'T-7', "
                ":status, :enabled, 5, 0.55, 0.4, 2, 0.31, 2, 1, :kind, :content, 'smollm2-135m-instruct', "
                ":sha, NULL, :t, :t, :t, NULL, :t, 12.5, 1)"),
                {"id": fs_id, "name": name, "status": status, "enabled": True, "kind": kind,
                 "content": "c" * 64, "sha": sha, "t": T0})
        for row in DOCUMENTS:
            conn.execute(text("INSERT INTO forget_documents VALUES (:s, :k, :p, :t, :a)"),
                         dict(zip("skpta", row, strict=True)))
        conn.execute(text("INSERT INTO artifacts VALUES (:sha, :data, :size, :t)"),
                     {"sha": ARTIFACT_SHA, "data": ARTIFACT, "size": len(ARTIFACT), "t": T0})
        for actor, action, fs_id, reason, details in AUDIT:
            conn.execute(text("INSERT INTO audit_log (at, actor, action, forget_set_id, reason, details) "
                              "VALUES (:t, :actor, :action, :fs, :reason, :details)"),
                         {"t": T0, "actor": actor, "action": action, "fs": fs_id, "reason": reason,
                          "details": json.dumps(details)})


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    """An engine on the database behind the registry's back."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current(conn)


def _schema_drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


@pytest.mark.parametrize("version", [1, 2])
def test_a_database_from_before_migrations_keeps_every_row(db_url: str, raw: Engine, version: int) -> None:
    write_schema_1(raw, version=1)
    if version == 2:  # what the previous code's own upgrade step did on open
        with raw.begin() as conn:
            for column in ("build_phase VARCHAR(32)", "build_progress FLOAT", "subjects TEXT", "report TEXT"):
                conn.exec_driver_sql(f"ALTER TABLE forget_sets ADD COLUMN {column}")
            conn.exec_driver_sql("UPDATE schema_version SET version = 2")
    with Registry(db_url) as reg:
        records = {r.id: r for r in reg.list()}
        assert sorted(records) == [s[0] for s in SETS]
        jane = records["fs_000000000001"]
        assert (jane.name, jane.status, jane.doc_kind, jane.layer, jane.threshold, jane.alpha) == (
            "jane-doe", "active", "qa", 5, 0.55, 0.4)
        assert (jane.created_at, jane.build_seconds, jane.attempts, jane.ticket) == (T0, 12.5, 1, "T-7")
        assert (jane.build_phase, jane.build_progress, jane.subjects, jane.report) == (None, None, None, None)
        assert records["fs_000000000002"].status == "failed"
        docs = reg.documents("fs_000000000001")
        assert [(p.question, p.answer) for p in docs.forget.qa] == [
            ("Where was Jane Doe born?", "In Oslo."), ("What did Jane Doe write?", "The Fjord.")]
        assert docs.retain == ("Oslo is in Norway.",)
        assert reg.documents("fs_000000000002").forget.documents == ("A headline nobody may repeat.",)
        loaded = reg.load_artifacts("fs_000000000001")
        assert torch.equal(loaded["centroids"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
        entries = sorted(reg.audit(limit=100), key=lambda e: e.id)
        assert [(e.actor, e.action, e.forget_set_id, e.reason, dict(e.details)) for e in entries] == [
            (a, b, c, d, e) for a, b, c, d, e in AUDIT]
        assert [e.at for e in entries] == [T0] * len(AUDIT)
        # The new columns are usable.
        reg.set_report("fs_000000000001", {"forget_answered": 0.0})
        assert reg.get_report("fs_000000000001") == {"forget_answered": 0.0}
    assert _revision(raw) == migrations.head()
    tables = set(inspect(raw).get_table_names())
    assert "schema_version" not in tables and {"forget_sets", "alembic_version"} <= tables
    assert NEW_COLUMNS <= {c["name"] for c in inspect(raw).get_columns("forget_sets")}
    assert _schema_drift(raw) == []


def test_the_audit_log_stays_append_only_after_migrating(db_url: str, raw: Engine) -> None:
    write_schema_1(raw)
    Registry(db_url).close()
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), raw.begin() as conn:
            conn.exec_driver_sql(statement)
    with raw.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE actor <> 'mallory'")).scalar() == len(AUDIT)


def test_a_fresh_database_matches_the_models_and_is_append_only(db_url: str, raw: Engine) -> None:
    Registry(db_url).close()
    assert _revision(raw) == migrations.head() == "0002"
    assert _schema_drift(raw) == []
    assert "schema_version" not in inspect(raw).get_table_names()
    with raw.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, action, details) VALUES (:t, 'a', 'create', '{}')"),
                     {"t": T0})
    with pytest.raises(DBAPIError, match="append-only"), raw.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log")


def test_a_legacy_version_newer_than_schema_2_is_refused(db_url: str, raw: Engine) -> None:
    write_schema_1(raw, version=3)
    with pytest.raises(SchemaVersionError, match="expected registry schema version <= 2, found 3"):
        Registry(db_url)
    assert "schema_version" in inspect(raw).get_table_names()  # left as it was
