"""The gate's decision is hidden from keys holding only the ``generate`` scope (docs/SPEC.md): no
``guardit`` object in responses or stream events, nothing else that differs, while the same request
is steered the same way; ``compare``/``admin`` keys see it. Real model, real server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.security.conftest import OPEN_PROMPT

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"


def _events(response: Any) -> list[dict[str, Any]]:
    chunks = [c for c in response.text.split("\n\n") if c.strip()]
    assert chunks[-1] == "data: [DONE]"
    return [json.loads(c.removeprefix("data: ")) for c in chunks[:-1]]


def _bodies(prompt: str) -> dict[str, dict[str, Any]]:
    chat = [{"role": "user", "content": prompt}]
    return {"/v1/generate": {"prompt": prompt, "seed": 1},
            "/v1/chat/completions": {"model": MODEL, "messages": chat, "seed": 1},
            "/v1/completions": {"model": MODEL, "prompt": prompt, "seed": 1}}


def _text(path: str, body: dict[str, Any]) -> str:
    if path == "/v1/generate":
        return str(body["text"])
    choice = body["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/chat/completions", "/v1/completions"])
def test_generate_scope_sees_the_steered_answer_but_no_gate_internals(server: Any, secret_set: str,
                                                                      path: str) -> None:
    body = _bodies(OPEN_PROMPT)[path]
    hidden = server.request("POST", path, "generate", json=body)
    shown = server.request("POST", path, "admin", json=body)
    assert hidden.status_code == shown.status_code == 200, hidden.text
    assert "guardit" not in hidden.json()
    assert shown.json()["guardit"]["steered"] is True
    assert shown.json()["guardit"]["matched"][0]["forget_set_id"] == secret_set
    assert _text(path, hidden.json()) == _text(path, shown.json())  # steered the same way
    without = {k: v for k, v in shown.json().items() if k not in ("guardit", "id", "created")}
    assert {k: v for k, v in hidden.json().items() if k not in ("id", "created")} == without
    assert not any(h.lower().startswith("x-guardit") for h in hidden.headers)


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/chat/completions", "/v1/completions"])
def test_streams_of_the_generate_scope_carry_no_gate_event(server: Any, secret_set: str, path: str) -> None:
    body = {**_bodies(OPEN_PROMPT)[path], "stream": True}
    hidden = _events(server.request("POST", path, "generate", json=body))
    shown = _events(server.request("POST", path, "admin", json=body))
    assert not any("guardit" in e for e in hidden)
    assert any(e.get("guardit", {}).get("steered") for e in shown)
    assert len(hidden) == len(shown)


def test_a_closed_gate_and_an_open_one_look_alike_to_the_generate_scope(server: Any, secret_set: str) -> None:
    opened = server.request("POST", "/v1/generate", "generate", json={"prompt": OPEN_PROMPT}).json()
    closed = server.request("POST", "/v1/generate", "generate",
                            json={"prompt": "What is the capital of France?"}).json()
    assert set(opened) == set(closed) == {"text", "finish_reason", "usage"}


def test_the_compare_scope_still_sees_both_arms_and_the_gate(server: Any, secret_set: str) -> None:
    response = server.request("POST", "/v1/compare", "compare", json={"prompt": OPEN_PROMPT, "seed": 1})
    assert response.status_code == 200
    body = response.json()
    assert body["steered"]["guardit"]["steered"] is True and body["unsteered"]["guardit"]["steered"] is False
    assert body["matched"][0]["forget_set_id"] == secret_set


def test_a_setting_exposes_the_gate_to_trusted_generate_callers() -> None:
    from types import SimpleNamespace

    from service.deps import shows_gate
    from service.settings import Settings

    def request(scopes: set[str], expose: bool) -> Any:
        app = SimpleNamespace(state=SimpleNamespace(settings=Settings(expose_gate_to_generate=expose)))
        return SimpleNamespace(app=app, state=SimpleNamespace(scopes=frozenset(scopes)))

    assert not shows_gate(request({"generate"}, expose=False))
    assert shows_gate(request({"generate"}, expose=True))
    assert shows_gate(request({"generate", "compare"}, expose=False))
    assert not shows_gate(request({"generate", "forget"}, expose=False))
