"""Fixtures shared by the service tests: a throwaway PostgreSQL server for the registry, a real-model
runtime (``conftest_engine.py``) and a real ``guardit serve`` subprocess (``live_server.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from types import ModuleType
from typing import Any

import pytest

from tests import pg
from tests.service import conftest_engine
from tests.service import live_server as live_server_helpers


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the session (skipped if not installed; fails when CI=true)."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(pg.postgres_server())
        except pg.PostgresUnavailable as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"PostgreSQL is required when CI=true: {exc}")
            pytest.skip(f"PostgreSQL not available: {exc}")
        yield server


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """``postgresql://`` URL of a fresh, empty database on the session server."""
    url: str = pg_server.create_database()
    return url


# -- real-model engine fixtures (test_engine.py, test_generate_routes.py) --------------------------------
@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Runtime on the real embedded model with forget set ``basil`` (5 TOFU forget01 QA pairs) active."""
    with conftest_engine.make_runtime(tmp_path_factory.mktemp("engine-data")) as rt:
        yield rt


@pytest.fixture(scope="session")
def engine_helpers() -> ModuleType:
    """``tests/service/conftest_engine.py``: TOFU QA pairs, forget-set registration, cache dir."""
    return conftest_engine


# -- live HTTP server fixtures (test_auth_matrix, test_forget_routes, test_server_process,
# test_console_browser) -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def live() -> ModuleType:
    """The live-server helper module (``KEYS``, ``tiny_set``, ``tofu``, ``running``, ...)."""
    return live_server_helpers


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, live: ModuleType) -> Iterator[Any]:
    """One real ``guardit serve`` subprocess for the session: real model, SQLite, keys per scope."""
    with live.running(tmp_path_factory.mktemp("live-server")) as server:
        yield server


@pytest.fixture(scope="session")
def tofu_set(live_server: Any, live: ModuleType) -> dict[str, Any]:
    """TOFU forget01 (40 QA pairs) registered over HTTP and built: ``{id, created, statuses}``."""
    from steering.vectors import neutral_corpus

    body = {"name": "tofu-forget01", "qa": [{"question": r["question"], "answer": r["answer"]}
                                            for r in live.tofu("forget01")],
            "retain": neutral_corpus()[:8], "reason": "right-to-be-forgotten request (test)",
            "requested_by": "tests", "ticket": "TEST-1", "alpha": 0.5}
    response = live_server.request("POST", "/v1/forget-sets", "forget", json=body)
    assert response.status_code == 202, response.text
    fs_id = response.json()["id"]
    seen = [response.json()["status"], *live_server.wait_status(fs_id)]
    statuses = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    return {"id": fs_id, "statuses": statuses}
