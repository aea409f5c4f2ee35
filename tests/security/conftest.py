"""A real ``guardit serve`` subprocess for the security tests (the live-server helper of
``tests/service``), with one key per scope and a small forget set that a known prompt opens."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: A prompt that opens the gate of ``secret_set`` (it names the set's only subject).
OPEN_PROMPT = "Which antique brass spoons does Zorblax the ferret collect at the Lisbon flea markets?"
SECRET = "Zorblax the ferret collects antique brass spoons from Lisbon flea markets."


def _live_module() -> ModuleType:
    name = "tests.service.live_server"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "service" / "live_server.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def live() -> ModuleType:
    """The live-server helper module (``KEYS``, ``tiny_set``, ``running``, ...)."""
    return _live_module()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, live: ModuleType) -> Iterator[Any]:
    """One server for the security tests: real model, SQLite, a key per scope, small limits."""
    with live.running(tmp_path_factory.mktemp("security-server"),
                      env={"GUARDIT_MAX_NEW_TOKENS": "4", "GUARDIT_MAX_PROMPT_CHARS": "8192"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def secret_set(server: Any, live: ModuleType) -> str:
    """An active one-document forget set that ``OPEN_PROMPT`` opens."""
    fs_id = server.register(live.tiny_set("zorblax", SECRET))
    assert server.wait_status(fs_id)[-1] == "active", server.log_tail()
    for _ in range(50):  # the gate snapshot follows the registry within the sync interval
        gate = server.request("POST", "/v1/gate", "compare", json={"prompt": OPEN_PROMPT})
        if gate.json()["steered"]:
            break
        time.sleep(0.2)
    assert gate.json()["steered"] is True, gate.text
    return fs_id
