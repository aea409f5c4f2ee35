"""The server as a process: probes, Prometheus counters, request ids and JSON logs, graceful SIGTERM,
and crash safety: SIGKILL during a forget-set build and during a stream loses no active set, requeues
the interrupted build and leaves the audit log append-only."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a Prometheus exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_probes_answer_without_a_key(live_server: Any) -> None:
    assert live_server.client.get("/healthz").json() == {"status": "ok"}
    ready = live_server.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["model"] == "smollm2-135m-instruct"


def test_metrics_counters_move_after_requests(live_server: Any) -> None:
    before = _samples(live_server.client.get("/metrics").text)
    generated = live_server.request("POST", "/v1/generate", "generate",
                                    json={"prompt": "Hi", "max_new_tokens": 3})
    assert generated.status_code == 200
    assert live_server.request("GET", "/v1/forget-sets", None).status_code == 401
    live_server.request("POST", "/v1/gate", "compare", json={"prompt": "Where is the Eiffel Tower?"})
    scrape = live_server.client.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    after = _samples(scrape.text)

    def moved(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved('guardit_requests_total{code="200",route="/v1/generate"}') == 1
    assert moved('guardit_requests_total{code="401",route="/v1/forget-sets"}') == 1
    assert moved('guardit_request_seconds_count{route="/v1/generate"}') == 1
    assert moved("guardit_generated_tokens_total") == generated.json()["usage"]["completion_tokens"]
    assert moved('guardit_gate_decisions_total{result="closed"}') >= 2
    assert moved("guardit_batch_size_count") >= 1
    assert "guardit_queue_depth" in after and 'guardit_forget_sets{status="active"}' in after
    assert not any(k.startswith("guardit_requests_total") and ('"/metrics"' in k or '"/healthz"' in k)
                   for k in after)
    assert "guardit_forget_set_build_seconds_count" in after
    assert "# TYPE guardit_kernel_fallback_total counter" in scrape.text


def test_request_ids_are_echoed_and_logged_with_json_lines(live_server: Any) -> None:
    given = "req-abc.123"
    response = live_server.request("GET", "/v1/forget-sets", "forget", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given
    minted = live_server.request("GET", "/v1/forget-sets", "forget",
                                 headers={"X-Request-ID": "bad id <script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", minted.headers["x-request-id"])
    time.sleep(0.2)
    lines = [json.loads(line) for line in live_server.log_text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("request_id") == given]
    assert access and access[-1]["route"] == "/v1/forget-sets" and access[-1]["status"] == 200


def test_forget_set_text_never_reaches_the_log(live_server: Any, live: Any) -> None:
    marker = "Xyloquent-4417 keeps a diary in the lighthouse."
    fs_id = live_server.register(live.tiny_set("private", marker))
    live_server.wait_status(fs_id)
    live_server.request("POST", "/v1/gate", "compare", json={"prompt": marker})
    live_server.revoke(fs_id)
    log = live_server.log_text()
    assert fs_id in log and "Xyloquent" not in log


def _registry_rows(data_dir: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    from service.registry import Registry

    with Registry.for_data_dir(data_dir) as registry:
        statuses = {r.id: r.status for r in registry.list()}
        audit = [e.to_dict() for e in registry.audit(limit=10_000)]
    return statuses, audit


def _stream_then_kill(server: Any) -> None:
    with server.client.stream("POST", "/v1/generate", headers=server.auth("generate"),
                              json={"prompt": "Tell me a long story about a lighthouse.",
                                    "max_new_tokens": 200, "stream": True}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert "delta" in first
        server.kill()
        with pytest.raises(httpx.HTTPError):
            for _ in lines:
                pass


def test_sigkill_mid_build_and_mid_stream_keeps_the_registry_consistent(tmp_path: Path, live: Any) -> None:
    from steering.vectors import neutral_corpus

    server = live.LiveServer(tmp_path / "crash").start().wait_ready()
    try:
        kept = server.register(live.tiny_set("kept", "Marrowind the heron paints lighthouses at dusk."))
        assert server.wait_status(kept)[-1] == "active"
        slow = {"name": "interrupted", "qa": [{"question": r["question"], "answer": r["answer"]}
                                              for r in live.tofu("forget01")[:16]],  # a few seconds
                "retain": neutral_corpus()[:8], "reason": "crash test", "requested_by": "tests", "alpha": 0.5}
        victim = server.register(slow)
        server.wait_status(victim, done=("building",), timeout_s=60)
        server.kill()  # SIGKILL while the build runs
        statuses, audit = _registry_rows(server.data_dir)
        assert statuses == {kept: "active", victim: "building"}

        server.start().wait_ready()  # same data dir: the interrupted build is requeued and rebuilt
        assert server.status(kept) == "active"
        rebuilt = server.wait_status(victim)[-1]
        assert rebuilt in ("active", "failed")
        after = server.audit()
        assert after[:len(audit)] == audit  # rows only appended
        recover = [e for e in after[len(audit):] if e["action"] == "recover"]
        assert [(e["forget_set_id"], e["actor"]) for e in recover] == [(victim, "system:startup")]

        _stream_then_kill(server)  # SIGKILL while a response streams
        statuses_2, audit_2 = _registry_rows(server.data_dir)
        assert statuses_2 == {kept: "active", victim: rebuilt}
        server.start().wait_ready()
        assert server.audit() == audit_2  # nothing was building: no recovery, nothing rewritten
        assert server.status(kept) == "active"
        answer = server.request("POST", "/v1/generate", "generate",
                                json={"prompt": "Hi", "max_new_tokens": 2})
        assert answer.status_code == 200
        # Graceful SIGTERM: the lifespan drains and stops (uvicorn then re-raises the signal: -15).
        assert server.stop() in (0, -15)
        assert "Application shutdown complete" in server.log_tail(5)
    finally:
        server.close()
