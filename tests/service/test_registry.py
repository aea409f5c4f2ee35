"""Forget-set registry on real databases: SQLite in tmp_path and a throwaway PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from service import migrations
from service.db_models import make_engine, normalize_url
from service.registry import (
    ArtifactCorruptError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    Registry,
    SchemaVersionError,
    StoredTexts,
    content_sha256,
)
from steering.forget_set import ForgetDocuments, QAPair

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry(db_url)
    yield reg
    reg.close()


@pytest.fixture
def raw(db_url: str, registry: Registry) -> Iterator[Engine]:
    """A second engine on the same database, for checks behind the registry's back."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _create(reg: Registry, name: str = "author", **overrides: Any) -> str:
    kwargs: dict[str, Any] = {
        "name": name,
        "documents": ["Jane Doe was born in Oslo.", "Jane Doe wrote The Fjord."],
        "qa": None,
        "retain": ["Oslo is in Norway."],
        "reason": "GDPR art. 17",
        "requested_by": "legal",
        "ticket": "T-1",
        "layer": None,
        "threshold": None,
        "alpha": None,
        "model_id": "smollm2-135m-instruct",
        "actor": "key:ab12",
    }
    kwargs.update(overrides)
    return reg.create(**kwargs).id


def _build(reg: Registry, fs_id: str, artifacts: dict[str, torch.Tensor] | None = None) -> None:
    claimed = reg.claim_next_pending(actor="worker:1")
    assert claimed is not None and claimed.id == fs_id
    reg.activate(
        fs_id,
        artifacts=artifacts or {"vectors": torch.ones(2, 4)},
        layer=7,
        threshold=0.6,
        alpha=0.3,
        n_clusters=2,
        silhouette=0.41,
        build_seconds=1.5,
        actor="worker:1",
    )


def _count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_create_stores_a_pending_document_set_with_hash_texts_and_audit_row(registry: Registry) -> None:
    before = datetime.now(UTC)
    fs_id = _create(registry)
    rec = registry.get(fs_id)
    assert re.fullmatch(r"fs_[0-9a-f]{12}", fs_id)
    assert (rec.status, rec.enabled, rec.attempts, rec.doc_kind) == ("pending", True, 0, "documents")
    assert (rec.n_documents, rec.n_retain, rec.ticket, rec.model_id) == (2, 1, "T-1", "smollm2-135m-instruct")
    assert (rec.layer, rec.threshold, rec.alpha, rec.artifacts_sha256, rec.activated_at) == (None,) * 5
    assert rec.content_sha256 == content_sha256(
        ["Jane Doe was born in Oslo.", "Jane Doe wrote The Fjord."], None, ["Oslo is in Norway."]
    )
    assert rec.created_at.tzinfo is not None and rec.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= rec.created_at <= datetime.now(UTC)
    assert registry.documents(fs_id) == StoredTexts(
        ForgetDocuments(documents=("Jane Doe was born in Oslo.", "Jane Doe wrote The Fjord.")),
        retain=("Oslo is in Norway.",),
    )
    as_json = json.loads(json.dumps(rec.to_dict()))
    assert as_json["created_at"] == rec.created_at.isoformat() and as_json["status"] == "pending"
    [entry] = registry.audit()
    assert (entry.action, entry.actor, entry.forget_set_id, entry.reason) == (
        "create",
        "key:ab12",
        fs_id,
        "GDPR art. 17",
    )
    assert entry.details["content_sha256"] == rec.content_sha256 and entry.details["n_documents"] == 2
    assert "Jane" not in json.dumps(entry.to_dict())  # the audit never carries forget text


def test_create_qa_set_round_trips_pairs_and_hashes_differently(registry: Registry) -> None:
    qa = [("Where was Jane Doe born?", "Oslo"), ("What did she write?", "The Fjord")]
    fs_id = _create(registry, documents=None, qa=qa, retain=None)
    rec = registry.get(fs_id)
    assert (rec.doc_kind, rec.n_documents, rec.n_retain) == ("qa", 2, 0)
    assert registry.documents(fs_id) == StoredTexts(ForgetDocuments(qa=tuple(QAPair(q, a) for q, a in qa)), ())
    assert rec.content_sha256 == content_sha256(None, qa, None)
    assert rec.content_sha256 != content_sha256([q for q, _ in qa], None, None)


@pytest.mark.parametrize(
    ("documents", "qa", "message"),
    [
        (["a"], [("q", "a")], "expected exactly one of documents or qa, found both"),
        (None, None, "expected exactly one of documents or qa, found neither"),
        ([], None, "expected at least one forget document, found 0"),
        (["ok", "  "], None, "expected non-empty text for document 1"),
    ],
)
def test_create_rejects_broken_invariants_and_stores_nothing(
    registry: Registry, documents: list[str] | None, qa: list[tuple[str, str]] | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        _create(registry, documents=documents, qa=qa)
    assert registry.list() == [] and registry.change_token() == 0


def test_get_and_documents_of_an_unknown_id_raise_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="expected a forget set with id 'fs_000000000000', found none"):
        registry.get("fs_000000000000")
    with pytest.raises(NotFoundError):
        registry.documents("fs_000000000000")


def test_list_is_newest_first_and_filters_by_status(registry: Registry) -> None:
    ids = [_create(registry, name=f"set{i}") for i in range(3)]
    assert [r.id for r in registry.list()] == ids[::-1]
    assert registry.claim_next_pending() is not None  # the oldest one
    assert [r.id for r in registry.list(status="building")] == [ids[0]]
    assert [r.id for r in registry.list(status="pending")] == [ids[2], ids[1]]
    assert registry.active_sets() == []
    with pytest.raises(InvalidInputError, match="found 'done'"):
        registry.list(status="done")


def test_full_lifecycle_writes_one_audit_row_per_change(registry: Registry) -> None:
    fs_id = _create(registry)
    _build(registry, fs_id)
    active = registry.get(fs_id)
    assert (active.status, active.attempts, active.layer, active.n_clusters) == ("active", 1, 7, 2)
    assert (active.threshold, active.alpha, active.silhouette, active.build_seconds) == (0.6, 0.3, 0.41, 1.5)
    assert active.build_started_at is not None and active.activated_at is not None
    assert active.created_at <= active.build_started_at <= active.activated_at == active.updated_at
    assert [r.id for r in registry.active_sets()] == [fs_id]

    updated = registry.update(fs_id, threshold=0.7, enabled=False, actor="key:cd34", reason="too eager")
    assert (updated.threshold, updated.alpha, updated.enabled) == (0.7, 0.3, False)
    assert registry.update(fs_id, threshold=0.7, actor="key:cd34") == updated  # no change: no audit row
    revoked = registry.revoke(fs_id, reason="request withdrawn", actor="cli:root")
    assert revoked.status == "revoked" and revoked.revoked_at is not None

    entries = registry.audit(forget_set_id=fs_id)
    assert [(e.action, e.actor, e.reason) for e in entries] == [
        ("create", "key:ab12", "GDPR art. 17"),
        ("build_start", "worker:1", None),
        ("activate", "worker:1", None),
        ("update", "key:cd34", "too eager"),
        ("revoke", "cli:root", "request withdrawn"),
    ]
    assert entries[3].details == {"threshold": [0.6, 0.7], "enabled": [True, False]}
    assert entries[4].details == {"from": "active", "documents_deleted": 3, "artifacts_deleted": True}
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert [e.id for e in registry.audit(limit=2, offset=1)] == [entries[1].id, entries[2].id]


def test_overrides_on_the_record_win_over_the_values_a_build_used(registry: Registry) -> None:
    fs_id = _create(registry, threshold=0.8)
    assert registry.claim_next_pending() is not None
    registry.update(fs_id, alpha=0.05, actor="key:cd34", reason="changed while building")
    registry.activate(fs_id, artifacts={"v": torch.ones(2)}, layer=3, threshold=0.55, alpha=0.2, n_clusters=1,
                      silhouette=None, build_seconds=0.2, actor="worker:1")
    rec = registry.get(fs_id)
    assert (rec.status, rec.layer, rec.threshold, rec.alpha) == ("active", 3, 0.8, 0.05)
    assert registry.audit(forget_set_id=fs_id)[-1].details["alpha"] == 0.05


def test_invalid_transitions_raise_and_leave_state_and_audit_unchanged(
    registry: Registry, raw: Engine
) -> None:
    pending = _create(registry, name="p")
    with pytest.raises(InvalidTransitionError, match="expected status building, found pending"):
        registry.activate(
            pending,
            artifacts={"v": torch.ones(1)},
            layer=1,
            threshold=0.5,
            alpha=0.2,
            n_clusters=1,
            silhouette=None,
            build_seconds=0.1,
            actor="w",
        )
    failed = registry.fail(pending, error="embedder crashed", actor="w")
    assert (failed.status, failed.error) == ("failed", "embedder crashed")
    token = registry.change_token()
    with pytest.raises(
        InvalidTransitionError, match="expected status pending or building or active, found failed"
    ):
        registry.update(pending, alpha=0.1, actor="k")
    with pytest.raises(InvalidTransitionError, match="expected status pending or building, found failed"):
        registry.fail(pending, error="again", actor="w")
    registry.revoke(pending, reason="cleanup", actor="k")
    with pytest.raises(
        InvalidTransitionError, match="expected status pending or building or active or failed, found revoked"
    ):
        registry.revoke(pending, reason="twice", actor="k")
    with pytest.raises(InvalidTransitionError, match="found revoked"):
        registry.update(pending, enabled=False, actor="k")
    assert registry.change_token() == token + 1  # only the successful revoke
    assert registry.get(pending).error == "embedder crashed"

    # Revoked while building: the finished build must not resurrect it, nor store artifacts.
    building = _create(registry, name="b")
    assert registry.claim_next_pending() is not None
    registry.revoke(building, reason="withdrawn mid-build", actor="k")
    with pytest.raises(
        InvalidTransitionError, match=f"cannot activate forget set {building}: .*found revoked"
    ):
        registry.activate(
            building,
            artifacts={"v": torch.ones(1)},
            layer=1,
            threshold=0.5,
            alpha=0.2,
            n_clusters=1,
            silhouette=None,
            build_seconds=0.1,
            actor="w",
        )
    assert registry.get(building).status == "revoked"
    assert _count(raw, "SELECT count(*) FROM artifacts") == 0


def test_audit_rows_are_never_modified_and_the_database_refuses_to(registry: Registry, raw: Engine) -> None:
    fs_id = _create(registry)
    first = registry.audit()
    _build(registry, fs_id)
    registry.update(fs_id, alpha=0.9, actor="k", reason="stronger")
    registry.revoke(fs_id, reason="done", actor="k")
    assert registry.audit()[: len(first)] == first
    for statement in ("UPDATE audit_log SET actor = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), raw.begin() as conn:
            conn.execute(text(statement))
    assert [e.actor for e in registry.audit()][0] == "key:ab12" and len(registry.audit()) == 5


def test_revoke_deletes_texts_and_artifacts_but_keeps_record_hash_and_audit(
    registry: Registry, raw: Engine
) -> None:
    fs_id, other = _create(registry, name="gone"), _create(registry, name="kept")
    _build(registry, fs_id)
    before = registry.get(fs_id)
    registry.revoke(fs_id, reason="right to be forgotten", actor="cli:root")
    after = registry.get(fs_id)
    assert (after.content_sha256, after.artifacts_sha256, after.name) == (
        before.content_sha256,
        before.artifacts_sha256,
        "gone",
    )
    assert _count(raw, "SELECT count(*) FROM forget_documents WHERE forget_set_id = :i", i=fs_id) == 0
    assert _count(raw, "SELECT count(*) FROM artifacts") == 0
    with pytest.raises(NotFoundError, match="deleted on revoke"):
        registry.documents(fs_id)
    with pytest.raises(NotFoundError, match=f"expected artifacts for forget set {fs_id}, found none"):
        registry.load_artifacts(fs_id)
    assert registry.documents(other).forget.documents == ("Jane Doe was born in Oslo.", "Jane Doe wrote The Fjord.")
    assert [e.action for e in registry.audit(forget_set_id=fs_id)][-1] == "revoke"


def test_artifacts_round_trip_bit_exact_and_are_stored_by_checksum(registry: Registry, raw: Engine) -> None:
    gen = torch.Generator().manual_seed(0)
    artifacts = {
        "vectors": torch.randn(3, 64, generator=gen),
        "centroids": torch.randn(3, 16, generator=gen).to(torch.bfloat16),
        "half": torch.randn(5, generator=gen).half(),
        "strided": torch.randn(8, 6, generator=gen).t(),  # non-contiguous view
        "labels": torch.tensor([0, 2, 1, 1], dtype=torch.int64),
    }
    fs_id = _create(registry)
    _build(registry, fs_id, artifacts)
    loaded = registry.load_artifacts(fs_id)
    assert sorted(loaded) == sorted(artifacts)
    for name, tensor in artifacts.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert torch.equal(loaded[name].view(torch.uint8), tensor.contiguous().view(torch.uint8))
    with raw.connect() as conn:
        sha, data, size = conn.execute(text("SELECT sha256, data, size FROM artifacts")).one()
    assert sha == registry.get(fs_id).artifacts_sha256 == hashlib.sha256(bytes(data)).hexdigest()
    assert size == len(data)


def test_a_corrupted_artifact_blob_raises_artifact_corrupt_error(registry: Registry, raw: Engine) -> None:
    fs_id = _create(registry)
    _build(registry, fs_id)
    sha = registry.get(fs_id).artifacts_sha256
    with raw.begin() as conn:
        data = bytearray(conn.execute(text("SELECT data FROM artifacts")).scalar_one())
        data[-1] ^= 0xFF
        conn.execute(text("UPDATE artifacts SET data = :d"), {"d": bytes(data)})
    with pytest.raises(
        ArtifactCorruptError, match=f"expected sha256 {sha}, found {hashlib.sha256(data).hexdigest()}"
    ):
        registry.load_artifacts(fs_id)
    garbage = b"not a safetensors file"
    with raw.begin() as conn:  # checksum matches but the content does not parse
        new_sha = hashlib.sha256(garbage).hexdigest()
        conn.execute(text("UPDATE artifacts SET data = :d, sha256 = :s"), {"d": garbage, "s": new_sha})
        conn.execute(text("UPDATE forget_sets SET artifacts_sha256 = :s"), {"s": new_sha})
    with pytest.raises(ArtifactCorruptError, match="expected a safetensors blob"):
        registry.load_artifacts(fs_id)


def test_claim_next_pending_is_exclusive_across_threads(registry: Registry) -> None:
    ids = {_create(registry, name=f"s{i}") for i in range(24)}
    barrier = threading.Barrier(4)
    claimed: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            while (rec := registry.claim_next_pending(actor=f"thread:{i}")) is not None:
                claimed[i].append(rec.id)
        except BaseException as exc:  # e.g. "database is locked": re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    flat = [fs_id for ids_of_one in claimed for fs_id in ids_of_one]
    assert sorted(flat) == sorted(ids)  # each claimed exactly once
    assert all(r.status == "building" and r.attempts == 1 for r in registry.list())
    assert sum(e.action == "build_start" for e in registry.audit(limit=1000)) == 24


_CLAIM_LOOP = """
import sys
from service.registry import Registry
reg = Registry(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
ids = []
while (rec := reg.claim_next_pending(actor="proc:" + sys.argv[2])) is not None:
    ids.append(rec.id)
print(" ".join(ids), flush=True)
reg.close()
"""


def test_claim_next_pending_is_exclusive_across_processes(registry: Registry, db_url: str) -> None:
    ids = {_create(registry, name=f"s{i}") for i in range(30)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM_LOOP, db_url, str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for i in range(3)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # release all at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=30)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    flat = [fs_id for out in outputs for fs_id in out]
    assert sorted(flat) == sorted(ids)
    assert {r.status for r in registry.list()} == {"building"}


def test_claim_takes_the_oldest_pending_set_and_returns_none_when_empty(registry: Registry) -> None:
    assert registry.claim_next_pending() is None
    first, second = _create(registry, name="a"), _create(registry, name="b")
    claims = [registry.claim_next_pending(), registry.claim_next_pending(), registry.claim_next_pending()]
    assert [c.id if c else None for c in claims] == [first, second, None]


def test_recover_interrupted_requeues_then_fails_after_max_attempts(registry: Registry) -> None:
    fs_id = _create(registry)
    assert registry.claim_next_pending() is not None
    assert registry.recover_interrupted(actor="boot", stale_after_s=3600) == []  # a live build elsewhere
    assert registry.get(fs_id).status == "building"
    assert registry.recover_interrupted(actor="boot", max_attempts=2) == [fs_id]
    assert (registry.get(fs_id).status, registry.get(fs_id).attempts) == ("pending", 1)
    assert registry.claim_next_pending() is not None
    assert registry.recover_interrupted(actor="boot", max_attempts=2) == [fs_id]
    rec = registry.get(fs_id)
    assert (rec.status, rec.attempts) == ("failed", 2)
    assert rec.error == "interrupted: build did not finish after 2 attempts"
    actions = [(e.action, e.actor, e.details.get("to")) for e in registry.audit(forget_set_id=fs_id)]
    assert actions[-3:] == [
        ("recover", "boot", "pending"),
        ("build_start", "system:builder", None),
        ("fail", "boot", "failed"),
    ]
    assert registry.recover_interrupted(actor="boot") == []


_CRASH_IN_ACTIVATE = """
import os, signal, sys
import torch
from sqlalchemy import event
from sqlalchemy.engine import Engine
from service.registry import Registry

@event.listens_for(Engine, "before_cursor_execute")
def crash_after_blob_insert(conn, cursor, statement, params, context, executemany):
    sql = statement.upper().lstrip()
    if sql.startswith("INSERT INTO ARTIFACTS"):
        print("blob-inserted", flush=True)
    elif sql.startswith("UPDATE FORGET_SETS") and "ARTIFACTS_SHA256" in sql:
        os.kill(os.getpid(), signal.SIGKILL)

reg = Registry(sys.argv[1])
rec = reg.claim_next_pending(actor="proc:doomed")
reg.activate(rec.id, artifacts={"v": torch.ones(4)}, layer=1, threshold=0.5, alpha=0.2, n_clusters=1,
             silhouette=None, build_seconds=0.1, actor="proc:doomed")
"""


def test_a_build_killed_inside_activate_leaves_the_set_building_never_half_active(
    registry: Registry, raw: Engine, db_url: str
) -> None:
    fs_id = _create(registry)
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_IN_ACTIVATE, db_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode == -9 and "blob-inserted" in done.stdout, done.stderr
    rec = registry.get(fs_id)
    assert (rec.status, rec.artifacts_sha256, rec.activated_at, rec.attempts) == ("building", None, None, 1)
    assert _count(raw, "SELECT count(*) FROM artifacts") == 0
    assert [e.action for e in registry.audit(forget_set_id=fs_id)] == ["create", "build_start"]
    deadline = time.monotonic() + 10  # PostgreSQL releases the dead session's row lock asynchronously
    while (touched := registry.recover_interrupted(actor="boot")) == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert touched == [fs_id] and registry.get(fs_id).status == "pending"


def test_change_token_grows_with_every_change_only(registry: Registry) -> None:
    tokens = [registry.change_token()]
    fs_id = _create(registry)
    tokens.append(registry.change_token())
    registry.get(fs_id), registry.list(), registry.audit()
    tokens.append(registry.change_token())
    _build(registry, fs_id)
    tokens.append(registry.change_token())
    registry.update(fs_id, enabled=False, actor="k")
    tokens.append(registry.change_token())
    assert tokens == [0, 1, 1, 3, 4]


def test_reopening_keeps_data_and_one_schema_revision_row(
    registry: Registry, db_url: str, raw: Engine
) -> None:
    fs_id = _create(registry)
    with Registry(db_url) as again:
        assert again.get(fs_id) == registry.get(fs_id)
    with raw.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(migrations.head(),)]
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": "9999"})
    with pytest.raises(
        SchemaVersionError, match=f"expected registry schema revision {migrations.head()} or older, found 9999"
    ):
        Registry(db_url)


def test_sqlite_registry_is_one_wal_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "guardit-data"
    reg = Registry.for_data_dir(data_dir)
    fs_id = _create(reg)
    assert reg.dialect == "sqlite" and reg.url == f"sqlite:///{data_dir.resolve() / 'registry.db'}"
    engine = make_engine(reg.url)
    with engine.connect() as conn:
        pragmas = [
            conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "foreign_keys", "busy_timeout")
        ]
    assert pragmas == ["wal", 1, 15000]
    engine.dispose()
    reg.close()
    assert {p.name for p in data_dir.iterdir()} <= {"registry.db", "registry.db-wal", "registry.db-shm"}
    with sqlite3.connect(data_dir / "registry.db") as conn:  # persisted: a plain sqlite3 client sees WAL too
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT status FROM forget_sets WHERE id = ?", (fs_id,)).fetchone() == (
            "pending",
        )


def test_postgres_urls_are_normalised_to_psycopg3() -> None:
    assert normalize_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("sqlite:////data/registry.db") == "sqlite:////data/registry.db"
