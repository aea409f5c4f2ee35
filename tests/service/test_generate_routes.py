"""The generation routes over HTTP (``TestClient``) on the real model: field-level 422s, auth before
body validation, SSE framing, OpenAI response and chunk shapes, the ``guardit`` object."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

KEY = "k" * 32
COMPARE_ONLY = "c" * 32
HEADERS = {"Authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "hi"}]
#: The ``guardit`` object of a response whose gate stayed closed (this key also holds ``compare``).
CLOSED = {"steered": False, "matched": [], "rechecked": False, "abstained": False, "abstain_reason": None}


def _minimal_app(engine: Any, settings: Any) -> FastAPI:
    """Until ``service.main.create_app`` exists: the generation routers with the real auth and errors."""
    from service.errors import install_error_handlers
    from service.routes import compare, generate, openai

    app = FastAPI()
    install_error_handlers(app)
    for module in (generate, compare, openai):
        app.include_router(module.router)
    app.state.settings = settings
    app.state.engine = engine
    return app


@pytest.fixture(scope="module")
def client(runtime: Any) -> Iterator[TestClient]:
    from service.engine import Engine

    engine = Engine(runtime, runtime.settings)
    settings = runtime.settings.model_copy(update={"api_keys": {KEY: ["generate", "compare"],
                                                                COMPARE_ONLY: ["compare"]}})
    if importlib.util.find_spec("service.main") is not None:
        from service.main import create_app

        engine.start()  # the session's model and registry, not a second load
        with TestClient(create_app(settings, runtime=runtime, engine=engine)) as tc:
            yield tc
    else:
        with TestClient(_minimal_app(engine, settings)) as tc:
            yield tc
    engine.close(drain_timeout=5)


@pytest.fixture(scope="module")
def open_q(engine_helpers: Any) -> str:
    """A forget-set question: opens the gate of the session's ``basil`` set."""
    return str(engine_helpers.tofu_qa(0, 2)[1][0])


def field_of(response: Any) -> str | None:
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    return error["field"]  # type: ignore[no-any-return]


def sse_events(response: Any) -> list[Any]:
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = [c for c in response.text.split("\n\n") if c.strip()]
    assert all(c.startswith("data: ") for c in chunks)
    assert chunks[-1] == "data: [DONE]"
    return [json.loads(c[len("data: "):]) for c in chunks[:-1]]


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "prompt"),
    ({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "hi", "max_new_tokens": "many"}, "max_new_tokens"),
    ({"prompt": "hi", "max_new_tokens": 100_000}, "max_new_tokens"),
    ({"prompt": "hi", "temperature": -1}, "temperature"),
    ({"prompt": "hi", "steer": False}, "steer"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": []}]}, "messages.0.content"),
])
def test_generate_rejects_bad_fields_naming_them(client: TestClient, payload: dict[str, Any],
                                                field: str) -> None:
    response = client.post("/v1/generate", json=payload, headers=HEADERS)
    assert response.status_code == 422
    assert field_of(response) == field


@pytest.mark.parametrize("route", ["/v1/generate", "/v1/compare", "/v1/chat/completions", "/v1/completions"])
def test_auth_is_checked_before_the_body_is_validated(client: TestClient, route: str) -> None:
    malformed = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    assert client.post(route, **malformed).status_code == 401  # type: ignore[arg-type]
    wrong_scope = {"Authorization": f"Bearer {COMPARE_ONLY}", "Content-Type": "application/json"}
    expected = 422 if route == "/v1/compare" else 403
    assert client.post(route, content=b"{not json", headers=wrong_scope).status_code == expected


def test_generate_returns_text_usage_and_the_gate_decision(client: TestClient) -> None:
    response = client.post("/v1/generate", headers=HEADERS, json={
        "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_new_tokens": 8})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"text", "finish_reason", "usage", "guardit"}
    assert body["text"] and body["finish_reason"] in {"stop", "length"}
    assert body["usage"]["completion_tokens"] <= 8 and body["usage"]["prompt_tokens"] > 0
    assert body["guardit"] == CLOSED


def test_generate_streams_deltas_then_the_full_response(client: TestClient, open_q: str) -> None:
    with client.stream("POST", "/v1/generate", headers=HEADERS,
                       json={"prompt": open_q, "max_new_tokens": 8, "stream": True}) as response:
        response.read()
    assert response.status_code == 200
    events = sse_events(response)
    final = events[-1]
    assert "".join(e["delta"] for e in events[:-1]) == final["text"]
    assert final["guardit"]["steered"] is True and final["guardit"]["matched"]


def test_compare_returns_both_arms_with_the_same_seed(client: TestClient, open_q: str) -> None:
    response = client.post("/v1/compare", headers=HEADERS, json={"prompt": open_q, "max_new_tokens": 8})
    assert response.status_code == 200
    body = response.json()
    assert body["steered"]["guardit"]["steered"] is True and body["unsteered"]["guardit"]["steered"] is False
    assert body["matched"] and (body["first_divergent_token"] is None or body["first_divergent_token"] >= 0)
    bad = client.post("/v1/compare", headers=HEADERS, json={"prompt": "hi", "stream": True})
    assert bad.status_code == 422 and field_of(bad) == "stream"


@pytest.mark.parametrize(("route", "payload", "status", "field"), [
    ("/v1/chat/completions", {"model": "gpt-4", "messages": HI}, 404, "model"),
    ("/v1/chat/completions", {"model": "M", "messages": HI, "n": 2}, 422, "n"),
    ("/v1/chat/completions", {"model": "M", "messages": []}, 422, "messages"),
    ("/v1/chat/completions", {"model": "M", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 0}, 422, "max_tokens"),
    ("/v1/chat/completions", {"model": "M", "messages": HI, "temperature": True}, 422, "temperature"),
    ("/v1/completions", {"model": "M", "prompt": ["a", "b"]}, 422, "prompt"),
    ("/v1/completions", {"model": "M", "prompt": "hi", "max_completion_tokens": 5, "max_tokens": 0}, 422,
     "max_tokens"),
])
def test_openai_routes_reject_bad_fields_naming_them(client: TestClient, route: str, payload: dict[str, Any],
                                                     status: int, field: str) -> None:
    model = client.get("/v1/models", headers=HEADERS).json()["data"][0]["id"]
    payload = {**payload, "model": model if payload["model"] == "M" else payload["model"]}
    response = client.post(route, json=payload, headers=HEADERS)
    assert response.status_code == status
    assert field_of(response) == field


def test_openai_shapes_carry_usage_and_guardit(client: TestClient) -> None:
    models = client.get("/v1/models", headers=HEADERS).json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    model = models["data"][0]["id"]
    chat = client.post("/v1/chat/completions", headers=HEADERS, json={
        "model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6,
        "temperature": 0, "user": "ignored-openai-field"}).json()
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    choice = chat["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in {"stop", "length"}
    usage = chat["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert chat["guardit"] == CLOSED
    text = client.post("/v1/completions", headers=HEADERS, json={
        "model": model, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}).json()
    assert text["object"] == "text_completion" and text["choices"][0]["text"]
    assert text["usage"]["completion_tokens"] <= 4 and "guardit" in text


def test_openai_chat_stream_is_chunks_with_guardit_first_and_last(client: TestClient, open_q: str) -> None:
    model = client.get("/v1/models", headers=HEADERS).json()["data"][0]["id"]
    with client.stream("POST", "/v1/chat/completions", headers=HEADERS, json={
            "model": model, "messages": [{"role": "user", "content": open_q}], "max_tokens": 6,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}) as response:
        response.read()
    events = sse_events(response)
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    first, last, usage = events[0], events[-2], events[-1]
    assert first["choices"][0]["delta"]["role"] == "assistant" and first["guardit"]["steered"] is True
    assert last["choices"][0]["finish_reason"] in {"stop", "length"} and last["guardit"] == first["guardit"]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] <= 6
    assert all(e["choices"][0]["delta"]["content"] for e in events[1:-2])


def test_official_openai_client_over_a_real_socket(runtime: Any, open_q: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn on loopback (in a thread, sharing the session's model) and the ``openai`` package."""
    import logging
    import socket
    import threading
    import time

    import openai
    import uvicorn

    from service.engine import Engine
    from service.main import create_app

    caplog.set_level(logging.INFO, logger="service.engine")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = runtime.settings.model_copy(update={"api_keys": {KEY: ["generate", "compare"]}})
    engine = Engine(runtime, settings)
    engine.start()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, runtime=runtime, engine=engine),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        model = client.models.list().data[0].id
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": open_q}],
                                              max_tokens=6, temperature=0, seed=1)
        assert chat.choices[0].message.content and chat.usage is not None
        assert chat.model_extra is not None and chat.model_extra["guardit"]["steered"] is True
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": open_q}],
                                                max_tokens=6, temperature=0, seed=1, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed == chat.choices[0].message.content
        text = client.completions.create(model=model, prompt="Once upon a time", max_tokens=4, temperature=0)
        assert text.choices[0].text and text.choices[0].finish_reason in {"stop", "length"}
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError):
            stranger = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x" * 20, max_retries=0)
            stranger.models.list()
        long = client.completions.create(model=model, prompt="Once upon a time", max_tokens=64, stream=True)
        next(iter(long))
        long.close()  # the client goes away mid-stream: its row is cancelled, not run to the end
        for _ in range(100):
            if "finish=cancelled" in caplog.text:
                break
            time.sleep(0.05)
        assert "finish=cancelled" in caplog.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close(drain_timeout=5)


def test_default_token_limits_never_exceed_the_server_cap_and_openai_caps_max_tokens() -> None:
    from service.protocol.generate import GenerateRequest
    from service.protocol.openai import ChatCompletionRequest, CompletionRequest
    from service.settings import Settings

    ids = {"request_id": "r", "route": "t"}
    wide, narrow = Settings(max_new_tokens=512), Settings(max_new_tokens=64)
    assert GenerateRequest(prompt="x").to_request(**ids, settings=wide).params.max_new_tokens == 128
    assert GenerateRequest(prompt="x").to_request(**ids, settings=narrow).params.max_new_tokens == 64
    message = {"role": "user", "content": "x"}
    chat = ChatCompletionRequest(model="m", messages=[message])  # type: ignore[list-item]
    assert chat.to_request(**ids, settings=narrow).params.max_new_tokens == 64
    over = ChatCompletionRequest(model="m", messages=[message], max_tokens=100_000)  # type: ignore[list-item]
    assert over.to_request(**ids, settings=narrow).params.max_new_tokens == 64  # capped, not refused
    text = CompletionRequest(model="m", prompt="x")
    assert text.to_request(**ids, settings=narrow).params.max_new_tokens == 16


def test_openai_routes_default_to_the_server_temperature_not_openais() -> None:
    from service.protocol.openai import ChatCompletionRequest, CompletionRequest
    from service.settings import Settings

    ids = {"request_id": "r", "route": "t"}
    message = {"role": "user", "content": "x"}
    chat = ChatCompletionRequest(model="m", messages=[message])  # type: ignore[list-item]
    assert chat.to_request(**ids, settings=Settings()).params.temperature == 0.0
    assert chat.to_request(**ids, settings=Settings(default_temperature=0.7)).params.temperature == 0.7
    given = CompletionRequest(model="m", prompt="x", temperature=1.0)
    assert given.to_request(**ids, settings=Settings(default_temperature=0.7)).params.temperature == 1.0
