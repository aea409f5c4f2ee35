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
