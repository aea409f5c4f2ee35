"""Servers for the security tests, each a real ``guardit serve`` subprocess with one key per scope.

- ``server`` + ``secret_set``: the embedded model with a small forget set that a known prompt opens
  (input hardening, scope hiding).
- ``attack_server``: a model that really knows the forgotten people, the TOFU target (the embedded
  SmolLM2 with the TOFU LoRA adapter of ``artifacts/tofu-lora/target`` merged in), with TOFU forget01
  (two authors) registered over HTTP. Attacks go through the generate scope; the compare scope gives
  the unsteered arm they are judged against.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.service import live_server
from tests.service.live_server import REPO, LiveServer, model_cache, running, tofu

#: A prompt that opens the gate of ``secret_set`` (it names the set's only subject).
OPEN_PROMPT = "Which antique brass spoons does Zorblax the ferret collect at the Lisbon flea markets?"
SECRET = "Zorblax the ferret collects antique brass spoons from Lisbon flea markets."
#: The attack server reads long prompts (the truncation attacks use ~2,000 tokens).
ATTACK_ENV = {"GUARDIT_MAX_PROMPT_TOKENS": "4096", "GUARDIT_MAX_BODY_BYTES": "1048576",
              "GUARDIT_MAX_BATCH_SIZE": "8"}


@pytest.fixture(scope="session")
def live() -> ModuleType:
    """The live-server helper module (``KEYS``, ``tiny_set``, ``running``, ...)."""
    return live_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server for the input tests: real model, SQLite, a key per scope, small limits."""
    with running(tmp_path_factory.mktemp("security-server"),
                 env={"GUARDIT_MAX_NEW_TOKENS": "4", "GUARDIT_MAX_PROMPT_CHARS": "8192"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def secret_set(server: Any) -> str:
    """An active one-document forget set that ``OPEN_PROMPT`` opens."""
    fs_id = server.register(live_server.tiny_set("zorblax", SECRET))
    assert server.wait_status(fs_id)[-1] == "active", server.log_tail()
    for _ in range(50):  # the gate snapshot follows the registry within the sync interval
        gate = server.request("POST", "/v1/gate", "compare", json={"prompt": OPEN_PROMPT})
        if gate.json()["steered"]:
            break
        time.sleep(0.2)
    assert gate.json()["steered"] is True, gate.text
    return fs_id


def merged_tofu_target() -> Path:
    """The TOFU target as a plain HF model dir in the shared model cache (merged once)."""
    from evals.finetune import merged_target

    return merged_target(model_cache(), REPO / "artifacts" / "tofu-lora" / "target")


@pytest.fixture(scope="session")
def attack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The TOFU target behind a real server, forget01 registered over HTTP and active."""
    env = {**ATTACK_ENV, "GUARDIT_MODEL": str(merged_tofu_target())}
    with running(tmp_path_factory.mktemp("attack-server"), env) as srv:
        body: dict[str, Any] = {
            "name": "tofu-forget01", "qa": [{"question": r["question"], "answer": r["answer"]}
                                            for r in tofu("forget01")],
            "reason": "right-to-be-forgotten request (test)", "requested_by": "tests"}
        fs_id = srv.register(body)
        assert srv.wait_status(fs_id, timeout_s=900)[-1] == "active", srv.log_tail()
        yield srv
