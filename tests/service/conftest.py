"""Fixtures shared by the service tests: a throwaway PostgreSQL server for the registry."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _pg_helpers() -> ModuleType:
    try:
        from tests import pg
    except ImportError:  # plain `pytest` without the repo root on sys.path
        spec = importlib.util.spec_from_file_location("tests.pg", Path(__file__).parents[1] / "pg.py")
        assert spec is not None and spec.loader is not None
        pg = importlib.util.module_from_spec(spec)
        sys.modules["tests.pg"] = pg
        spec.loader.exec_module(pg)
    return pg


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the session (skipped if not installed; fails when CI=true)."""
    pg = _pg_helpers()
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


# -- real-model engine fixtures (helper A: tests/service/test_engine.py, test_generate_routes.py) ----
def _engine_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tests.service.conftest_engine",
                                                  Path(__file__).with_name("conftest_engine.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Runtime on the real embedded model with forget set ``basil`` (5 TOFU forget01 QA pairs) active."""
    with _engine_fixtures().make_runtime(tmp_path_factory.mktemp("engine-data")) as rt:
        yield rt


@pytest.fixture(scope="session")
def engine_helpers() -> ModuleType:
    """``tests/service/conftest_engine.py``: TOFU QA pairs, forget-set registration, cache dir."""
    return _engine_fixtures()


# -- live HTTP server fixtures (helper B: test_auth_matrix, test_forget_routes, test_server_process,
# test_console_browser) -------------------------------------------------------------------------------
def live_server_module() -> ModuleType:
    """``tests/service/live_server.py``: the subprocess server, its keys and test data helpers."""
    name = "tests.service.live_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("live_server.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def live() -> ModuleType:
    """The live-server helper module (``KEYS``, ``tiny_set``, ``tofu``, ``running``, ...)."""
    return live_server_module()


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
