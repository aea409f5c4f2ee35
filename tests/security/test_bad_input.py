"""Bad input answers 4xx naming the field, never 500, on a real server: lone surrogates, integer
literals past Python's conversion limit, non-finite numbers, deep nesting, non-object bodies, huge
prompts (refused before tokenization, while /healthz keeps answering), out-of-range query numbers,
non-numbers where numbers are due, and knobs outside their bounds."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
SURROGATE = '"x\\ud800y"'  # the raw JSON escape: valid JSON, not valid Unicode text


def _raw(server: Any, path: str, body: str, scope: str = "admin", method: str = "POST") -> Any:
    return server.request(method, path, scope, content=body.encode("ascii"),
                          headers={"Content-Type": "application/json"})


def _refused(response: Any, field: str | None, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["field"] == field, error
    return error


@pytest.mark.parametrize(("path", "template", "field"), [
    ("/v1/generate", '{"prompt": $V}', "prompt"),
    ("/v1/generate", '{"messages": [{"role": "user", "content": $V}]}', "messages.0.content"),
    ("/v1/generate", '{"prompt": "hi", "stop": [$V]}', "stop.0"),
    ("/v1/compare", '{"prompt": $V}', "prompt"),
    ("/v1/chat/completions", '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", '
     '"content": $V}]}',
     "messages.0.content"),
    ("/v1/chat/completions", '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": '
     '[{"type": "text", "text": $V}]}]}', "messages.0.content.0.text"),
    ("/v1/completions", '{"model": "smollm2-135m-instruct", "prompt": $V}', "prompt"),
    ("/v1/completions", '{"model": "smollm2-135m-instruct", "prompt": "hi", "stop": $V}', "stop"),
    ("/v1/gate", '{"prompt": $V}', "prompt"),
    ("/v1/gate", '{"prompt": "hi", "answer": $V}', "answer"),
    ("/v1/forget-sets", '{"name": "n", "documents": [$V], "reason": "r", "requested_by": "t"}',
     "documents.0"),
    ("/v1/forget-sets", '{"name": "n", "qa": [{"question": $V, "answer": "a"}], "reason": "r", '
     '"requested_by": "t"}', "qa.0.question"),
    ("/v1/forget-sets", '{"name": "n", "qa": [{"question": "q", "answer": $V}], "reason": "r", '
     '"requested_by": "t"}', "qa.0.answer"),
    ("/v1/forget-sets", '{"name": "n", "documents": ["d"], "reason": $V, "requested_by": "t"}', "reason"),
    ("/v1/forget-sets", '{"name": "n", "documents": ["d"], "reason": "r", "requested_by": "t", '
     '"subjects": [$V]}', "subjects.0"),
])
def test_a_lone_surrogate_anywhere_is_a_422_naming_the_field(server: Any, path: str, template: str,
                                                             field: str) -> None:
    error = _refused(_raw(server, path, template.replace("$V", SURROGATE)), field)
    assert "surrogate" in error["message"]


def test_a_lone_surrogate_in_a_patch_reason_is_refused_and_nothing_changes(server: Any,
                                                                          secret_set: str) -> None:
    before = server.request("GET", f"/v1/forget-sets/{secret_set}").json()
    body = '{"threshold": 0.5, "reason": $V}'.replace("$V", SURROGATE)
    response = _raw(server, f"/v1/forget-sets/{secret_set}", body, method="PATCH")
    _refused(response, "reason")
    assert server.request("GET", f"/v1/forget-sets/{secret_set}").json()["threshold"] == before["threshold"]


@pytest.mark.parametrize(("path", "template", "field"), [
    ("/v1/generate", '{"prompt": "hi", "seed": $V}', "seed"),
    ("/v1/generate", '{"prompt": "hi", "max_new_tokens": $V}', "max_new_tokens"),
    ("/v1/completions", '{"model": "smollm2-135m-instruct", "prompt": "hi", "max_tokens": $V}',
     "max_tokens"),
    ("/v1/forget-sets", '{"name": "n", "documents": ["d"], "reason": "r", "requested_by": "t", '
     '"layer": $V}', "layer"),
    ("/v1/generate", '{"prompt": "hi", "unknown": [1, $V]}', "unknown.1"),
])
def test_integer_literals_past_the_conversion_limit_are_a_422(server: Any, path: str, template: str,
                                                              field: str) -> None:
    error = _refused(_raw(server, path, template.replace("$V", "9" * 5000)), field)
    assert "5000" in error["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_a_422(server: Any, literal: str) -> None:
    response = _raw(server, "/v1/generate", '{"prompt": "hi", "temperature": $V}'.replace("$V", literal))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "temperature"


@pytest.mark.parametrize(("body", "field"), [
    ("[" * 50_000 + "]" * 50_000, None),
    ('{"prompt": "hi", "stop": ' + "[" * 40 + "]" * 40 + "}", "stop" + ".0" * 32),
    ("[]", None), ('"a prompt"', None), ("null", None), ("", None), ("{not json", None),
])
def test_deep_nesting_and_bodies_that_are_not_objects_are_a_422(server: Any, body: str,
                                                                field: str | None) -> None:
    response = _raw(server, "/v1/generate", body)
    assert response.status_code == 422, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(("params", "field"), [
    ({"offset": 2**63}, "offset"), ({"offset": "9" * 5000}, "offset"), ({"limit": 2**63}, "limit"),
    ({"offset": -1}, "offset"), ({"limit": "many"}, "limit")])
def test_audit_paging_out_of_range_is_a_422(server: Any, params: dict[str, Any], field: str) -> None:
    _refused(server.request("GET", "/v1/audit", params=params), field)


def test_audit_paging_at_the_largest_offset_is_an_empty_page(server: Any) -> None:
    response = server.request("GET", "/v1/audit", params={"offset": 2**63 - 1})
    assert response.status_code == 200 and response.json()["entries"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"threshold": True}, "threshold"), ({"alpha": False}, "alpha"), ({"threshold": "0.5"}, "threshold"),
    ({"alpha": 1e308}, "alpha"), ({"alpha": -0.1}, "alpha"), ({"threshold": 1.5}, "threshold"),
    ({"enabled": 1}, "enabled"), ({"reason": ""}, "reason"), ({"steer": False}, "steer")])
def test_patch_takes_strict_numbers_within_bounds_only(server: Any, secret_set: str, body: dict[str, Any],
                                                       field: str) -> None:
    before = server.request("GET", f"/v1/forget-sets/{secret_set}").json()
    _refused(server.request("PATCH", f"/v1/forget-sets/{secret_set}", json=body), field)
    after = server.request("GET", f"/v1/forget-sets/{secret_set}").json()
    assert (after["threshold"], after["alpha"], after["enabled"]) == \
        (before["threshold"], before["alpha"], before["enabled"])


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/generate", {"prompt": "hi", "temperature": True}, "temperature"),
    ("/v1/generate", {"prompt": "hi", "max_new_tokens": 2.0}, "max_new_tokens"),
    ("/v1/generate", {"prompt": "hi", "stream": "yes"}, "stream"),
    ("/v1/generate", {"prompt": "hi", "temperature": 1e-300}, "temperature"),  # float32 divides by 0
    ("/v1/generate", {"prompt": "hi", "temperature": 0.5, "top_p": 1e-236}, "top_p"),  # keeps no token
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "temperature": 1e-300}, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": True},
     "n"),
    ("/v1/forget-sets", {"name": "n", "documents": ["d"], "reason": "r", "requested_by": "t",
                         "alpha": 1e308}, "alpha"),
    ("/v1/forget-sets", {"name": "n", "documents": ["d"], "reason": "r", "requested_by": "t",
                         "threshold": True}, "threshold"),
])
def test_request_numbers_are_strict(server: Any, path: str, body: dict[str, Any], field: str) -> None:
    _refused(server.request("POST", path, json=body), field)


def test_a_huge_prompt_is_refused_before_tokenization_while_healthz_answers(server: Any) -> None:
    prompt = "lorem ipsum " * 20_000  # 240,000 characters: far over the 8,192-character cap
    stalls: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            server.client.get("/healthz", timeout=10.0)
            stalls.append(time.perf_counter() - started)

    watcher = threading.Thread(target=probe)
    watcher.start()
    try:
        for path, body, field in (
                ("/v1/generate", {"prompt": prompt}, "prompt"),
                ("/v1/generate", {"messages": [{"role": "system", "content": prompt},
                                               {"role": "user", "content": "hi"}]}, "messages"),
                ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": prompt}]},
                 "messages"),
                ("/v1/completions", {"model": MODEL, "prompt": prompt}, "prompt"),
                ("/v1/gate", {"prompt": prompt}, "prompt")):
            started = time.perf_counter()
            error = _refused(server.request("POST", path, json=body), field)
            assert time.perf_counter() - started < 2.0
            assert "8192 characters" in error["message"]
    finally:
        done.set()
        watcher.join()
    assert stalls and max(stalls) < 2.0


def test_a_body_over_the_size_limit_is_a_413(server: Any) -> None:
    response = server.request("POST", "/v1/generate", json={"prompt": "x" * 300_000})  # limit 256 KiB
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_exactly_one_of_prompt_and_messages(server: Any) -> None:
    both = {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}
    for body in ({}, both):
        error = _refused(server.request("POST", "/v1/generate", json=body), "prompt")
        assert "exactly one of prompt or messages" in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data"])
def test_a_body_that_is_declared_not_json_is_a_415(server: Any, content_type: str) -> None:
    response = server.request("POST", "/v1/generate", content=b'{"prompt": "hi"}',
                              headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert content_type in response.json()["error"]["message"]
