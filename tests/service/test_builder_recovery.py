"""Taking over a build whose worker died or stalled: the build worker's stale-build check
(service.builder.BuildWorker.recover_stale) on a real SQLite registry and a Runtime that never loads
its model, and the registry refusing to let the superseded claim finish the set (SQLite and
PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from service.builder import RECOVERY_ACTOR, BuildWorker
from service.registry import InvalidTransitionError, Registry
from service.runtime import Runtime
from service.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    reg = Registry(url)
    yield reg
    reg.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield reg
    reg.close()


def _worker(registry: Registry, tmp_path: Path, stale_s: float, poll_s: float = 0.01) -> BuildWorker:
    settings = Settings(data_dir=tmp_path, recover_stale_after_s=stale_s)
    return BuildWorker(Runtime(settings, registry), poll_interval_s=poll_s)


def _claimed(registry: Registry) -> str:
    record = registry.create(name="a", documents=["Jane Doe was born in Oslo."], qa=None, retain=None,
                             reason="r", requested_by="legal", ticket=None, layer=None, threshold=None,
                             alpha=None, model_id="m", actor="test")
    assert registry.claim_next_pending(actor="system:builder") is not None
    return record.id


def test_a_build_older_than_the_limit_is_requeued_while_serving_and_a_younger_one_is_left(
        registry: Registry, tmp_path: Path) -> None:
    fs_id = _claimed(registry)
    worker = _worker(registry, tmp_path, stale_s=0.3)
    assert worker.recover_stale() == []  # younger than 0.3 s: a live build on another replica
    assert registry.get(fs_id).status == "building"
    time.sleep(0.35)  # past the limit and past the next check (stale / 4 = 75 ms)
    assert worker.recover_stale() == [fs_id]
    assert (registry.get(fs_id).status, registry.get(fs_id).attempts) == ("pending", 1)
    last = registry.audit(forget_set_id=fs_id)[-1]
    assert (last.action, last.actor, last.details["to"]) == ("recover", RECOVERY_ACTOR, "pending")


def test_checks_are_spaced_by_a_quarter_of_the_limit_or_the_poll_interval(
        registry: Registry, tmp_path: Path) -> None:
    fs_id = _claimed(registry)
    worker = _worker(registry, tmp_path, stale_s=0.2, poll_s=1.0)  # checks 1 s apart
    started = time.monotonic()
    assert worker.recover_stale() == []
    time.sleep(0.3)
    assert worker.recover_stale() == []  # stale, but the next check is not due: nothing queried
    assert registry.get(fs_id).status == "building"
    time.sleep(max(0.0, started + 1.05 - time.monotonic()))
    assert worker.recover_stale() == [fs_id]


def test_without_a_limit_the_serving_worker_never_requeues(registry: Registry, tmp_path: Path) -> None:
    fs_id = _claimed(registry)
    worker = _worker(registry, tmp_path, stale_s=0.0)
    time.sleep(0.05)
    assert worker.recover_stale() == []
    assert registry.get(fs_id).status == "building"  # only a start requeues it (one server)


def _activate(registry: Registry, fs_id: str, attempt: int) -> str:
    return registry.activate(fs_id, artifacts={"v": torch.ones(2, 4)}, layer=1, threshold=0.5, alpha=0.3,
                             n_clusters=1, silhouette=None, build_seconds=1.0, actor="system:builder",
                             attempt=attempt).status


def test_a_superseded_claim_can_neither_activate_nor_fail_the_set(any_registry: Registry) -> None:
    fs_id = _claimed(any_registry)  # attempt 1: its worker stalls past the limit
    assert any_registry.recover_interrupted(actor=RECOVERY_ACTOR) == [fs_id]
    second = any_registry.claim_next_pending(actor="system:builder")
    assert second is not None and second.attempts == 2
    with pytest.raises(InvalidTransitionError, match="expected the build of attempt 1, found status building "
                                                     "at attempt 2"):
        _activate(any_registry, fs_id, attempt=1)
    with pytest.raises(InvalidTransitionError, match="attempt 1"):
        any_registry.fail(fs_id, error="late failure of the stalled build", actor="system:builder", attempt=1)
    assert any_registry.get(fs_id).status == "building"
    assert _activate(any_registry, fs_id, attempt=2) == "active"
    actions = [e.action for e in any_registry.audit(forget_set_id=fs_id)]
    assert actions == ["create", "build_start", "recover", "build_start", "activate"]
