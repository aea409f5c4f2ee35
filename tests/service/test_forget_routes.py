"""``/v1/forget-sets`` and ``/v1/audit`` over real HTTP on the real model and SQLite: invalid input is a
4xx naming the field and writes nothing; TOFU forget01 goes pending -> building -> active, steers its
questions and leaves world facts alone; revoking it restores the unsteered answers exactly."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

SEED = 0
MAX_NEW = 16


def _valid(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "n", "documents": ["Zorblax the ferret collects antique brass spoons."],
                            "reason": "r", "requested_by": "tests"}
    return {**body, **overrides}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _valid().items() if k != key}


INVALID = [
    ("too-many-documents", _valid(documents=[f"document number {i}" for i in range(51)]), "documents"),
    ("empty-qa", _without("documents") | {"qa": []}, "qa"),
    ("empty-documents", _valid(documents=[]), "documents"),
    ("threshold-2", _valid(threshold=2.0), "threshold"),
    ("alpha-negative", _valid(alpha=-1), "alpha"),
    ("alpha-nan", _valid(alpha="NaN"), "alpha"),
    ("layer-99", _valid(layer=99), "layer"),
    ("layer-negative", _valid(layer=-1), "layer"),
    ("both-kinds", _valid(qa=[{"question": "q?", "answer": "a"}]), "documents"),
    ("neither-kind", _without("documents"), "documents"),
    ("qa-missing-answer", _without("documents") | {"qa": [{"question": "q?"}]}, "qa.0.answer"),
    ("qa-wrong-type", _without("documents") | {"qa": ["not a pair"]}, "qa.0"),
    ("documents-not-a-list", _valid(documents="one text"), "documents"),
    ("document-blank", _valid(documents=["ok", "   "]), "documents.1"),
    ("document-too-long", _valid(documents=["x" * 2001]), "documents.0"),
    ("document-not-text", _valid(documents=[42]), "documents.0"),
    ("retain-blank", _valid(retain=[""]), "retain.0"),
    ("name-missing", _without("name"), "name"),
    ("reason-missing", _without("reason"), "reason"),
    ("reason-empty", _valid(reason=""), "reason"),
    ("requested-by-wrong-type", _valid(requested_by=123), "requested_by"),
    ("unknown-field", _valid(steer=False), "steer"),
]


def _counts(server: Any) -> tuple[int, int]:
    sets = server.request("GET", "/v1/forget-sets").json()["forget_sets"]
    return len(sets), len(server.audit())


@pytest.mark.parametrize(("payload", "field"), [(p, f) for _, p, f in INVALID],
                         ids=[i for i, _, _ in INVALID])
def test_invalid_registration_is_422_naming_the_field_and_writes_nothing(live_server: Any, payload: Any,
                                                                          field: str) -> None:
    before = _counts(live_server)
    response = live_server.request("POST", "/v1/forget-sets", "forget", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == field
    assert field.split(".")[0] in error["message"]
    assert _counts(live_server) == before


@pytest.mark.parametrize("content", [b"", b"[]", b'"text"', b'{"name": ', b'{"name": "\xe9"}'],
                         ids=["empty", "array", "string", "truncated", "not-utf8"])
def test_a_body_that_is_not_a_json_object_is_422_never_500(live_server: Any, content: bytes) -> None:
    before = _counts(live_server)
    response = live_server.request("POST", "/v1/forget-sets", "forget", content=content,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]) == {"code", "message", "field"}
    assert _counts(live_server) == before


NESTED = pytest.param(b"[" * 100_000, None, id="nested-100k")


@pytest.mark.parametrize(("content", "field"), [
    (b'{"name": "n", "documents": ["\\ud800"], "reason": "r", "requested_by": "t"}', "documents.0"),
    (b'{"name": "n", "qa": [{"question": "q?", "answer": "\\udfff"}], "reason": "r", "requested_by": "t"}',
     "qa.0.answer"),
    (b'{"name": "n", "documents": ["ok"], "reason": "r", "requested_by": "t", "alpha": Infinity}', "alpha"),
    NESTED], ids=["lone-surrogate", "qa-lone-surrogate", "alpha-infinity", "nested-100k"])
def test_json_that_python_parses_but_no_store_takes_is_422(live_server: Any, content: bytes,
                                                           field: str | None) -> None:
    before = _counts(live_server)
    response = live_server.request("POST", "/v1/forget-sets", "forget", content=content,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert _counts(live_server) == before


def test_a_body_over_max_body_bytes_is_413_declared_or_streamed(live_server: Any) -> None:
    before = _counts(live_server)
    big = _valid(documents=["y" * 1000] * 300)  # ~300 kB > GUARDIT_MAX_BODY_BYTES=262144
    declared = live_server.request("POST", "/v1/forget-sets", "forget", json=big)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
    assert "262144 bytes" in declared.json()["error"]["message"]
    chunks = iter([b"[" + b" " * 65536] * 5)  # no Content-Length: the server counts while reading
    streamed = live_server.request("POST", "/v1/forget-sets", "forget", content=chunks,
                                   headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert _counts(live_server) == before


@pytest.mark.parametrize(("method", "kwargs"), [
    ("GET", {}), ("PATCH", {"json": {"alpha": 0.4}}), ("DELETE", {"params": {"reason": "gone"}})])
def test_unknown_ids_are_404_naming_the_id(live_server: Any, method: str, kwargs: dict[str, Any]) -> None:
    response = live_server.request(method, "/v1/forget-sets/fs_000000000000", "forget", **kwargs)
    assert response.status_code == 404
    assert response.json()["error"] | {"message": ""} == {"code": "not_found", "message": "", "field": "id"}


@pytest.mark.parametrize(("payload", "field"), [
    ({"threshold": 2.0}, "threshold"), ({"alpha": -1}, "alpha"), ({"enabled": "maybe"}, "enabled"),
    ({"layer": 3}, "layer")])
def test_invalid_patch_is_422_naming_the_field_and_changes_nothing(
        live_server: Any, tofu_set: dict[str, Any], payload: dict[str, Any], field: str) -> None:
    url = f"/v1/forget-sets/{tofu_set['id']}"
    before = live_server.request("GET", url, "forget").json()
    response = live_server.request("PATCH", url, "forget", json=payload)
    assert response.status_code == 422 and response.json()["error"]["field"] == field
    assert live_server.request("GET", url, "forget").json() == before


def test_status_and_audit_query_parameters_are_validated(live_server: Any) -> None:
    bad_status = live_server.request("GET", "/v1/forget-sets", "forget", params={"status": "gone"})
    assert bad_status.status_code == 422 and bad_status.json()["error"]["field"] == "status"
    for params, field in (({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"offset": -1}, "offset")):
        response = live_server.request("GET", "/v1/audit", "admin", params=params)
        assert response.status_code == 422 and response.json()["error"]["field"] == field


# -- TOFU forget01 end to end ---------------------------------------------------------------------
def test_tofu_forget01_goes_pending_building_active_with_every_field(live_server: Any,
                                                                     tofu_set: dict[str, Any]) -> None:
    statuses = tofu_set["statuses"]
    assert statuses[0] == "pending" and statuses[-1] == "active"
    assert statuses == [s for s in ("pending", "building", "active") if s in statuses]
    actions = [e["action"] for e in live_server.audit(tofu_set["id"])]
    assert actions[:3] == ["create", "build_start", "activate"]
    record = live_server.request("GET", f"/v1/forget-sets/{tofu_set['id']}", "forget").json()
    assert record["n_documents"] == 40 and record["n_clusters"] >= 1 and record["alpha"] == 0.5
    assert record["layer"] is not None and record["threshold"] is not None
    assert record["activated_at"] and record["created_at"] and record["error"] is None
    for key in ("silhouette", "reason", "requested_by", "ticket", "enabled", "content_sha256"):
        assert key in record
    listed = live_server.request("GET", "/v1/forget-sets", "forget", params={"status": "active"}).json()
    assert tofu_set["id"] in [s["id"] for s in listed["forget_sets"]]


def _compare(server: Any, prompt: str) -> dict[str, Any]:
    response = server.request("POST", "/v1/compare", "compare",
                              json={"prompt": prompt, "max_new_tokens": MAX_NEW, "seed": SEED})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def while_active(live_server: Any, live: Any, tofu_set: dict[str, Any]) -> dict[str, Any]:
    """Compare results with forget01 active: 4 of its questions and 2 TOFU world facts."""
    forget_qs = [r["question"] for r in live.tofu("forget01")[:4]]
    world_qs = [r["question"] for r in live.tofu("world_facts")[:2]]
    return {"forget": {q: _compare(live_server, q) for q in forget_qs},
            "world": {q: _compare(live_server, q) for q in world_qs}}


def test_compare_steers_forget01_questions(while_active: dict[str, Any], tofu_set: dict[str, Any]) -> None:
    results = list(while_active["forget"].values())
    assert all(tofu_set["id"] in {m["forget_set_id"] for m in r["matched"]} for r in results)
    assert all(r["steered"]["guardit"]["steered"] for r in results)
    assert not any(r["unsteered"]["guardit"]["steered"] for r in results)
    changed = [r for r in results if r["steered"]["text"] != r["unsteered"]["text"]]
    assert len(changed) >= 3, [(r["steered"]["text"], r["unsteered"]["text"]) for r in results]
    assert all(r["first_divergent_token"] is not None for r in changed)


def test_compare_leaves_world_facts_untouched(while_active: dict[str, Any]) -> None:
    for result in while_active["world"].values():
        assert result["matched"] == [] and result["first_divergent_token"] is None
        assert result["steered"]["text"] == result["unsteered"]["text"]


def test_gate_with_an_answer_shows_what_the_answer_recheck_decides(live_server: Any, live: Any,
                                                                   tofu_set: dict[str, Any]) -> None:
    closed = {"prompt": "Tell me something interesting about books."}
    assert live_server.request("POST", "/v1/gate", "compare", json=closed).json()["steered"] is False
    answer = live.tofu("forget01")[0]["answer"]  # an answer that repeats what the set forgets
    opened = live_server.request("POST", "/v1/gate", "compare", json={**closed, "answer": answer}).json()
    assert opened["steered"] is True and {m["forget_set_id"] for m in opened["matched"]} == {tofu_set["id"]}
    harmless = live_server.request("POST", "/v1/gate", "compare", json={**closed, "answer": "Try a library."})
    assert harmless.json()["steered"] is False
    empty = live_server.request("POST", "/v1/gate", "compare", json={**closed, "answer": ""})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "answer"


def test_patch_takes_effect_at_once_and_is_audited(live_server: Any, live: Any,
                                                   tofu_set: dict[str, Any]) -> None:
    url = f"/v1/forget-sets/{tofu_set['id']}"
    question = {"prompt": live.tofu("forget01")[0]["question"]}
    assert live_server.request("POST", "/v1/gate", "compare", json=question).json()["steered"] is True
    off = live_server.request("PATCH", url, "forget", json={"enabled": False, "reason": "pause"})
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert live_server.request("POST", "/v1/gate", "compare", json=question).json()["steered"] is False
    on = live_server.request("PATCH", url, "forget", json={"enabled": True, "alpha": 0.5})
    assert on.json()["enabled"] is True and on.json()["alpha"] == 0.5
    assert live_server.request("POST", "/v1/gate", "compare", json=question).json()["steered"] is True
    updates = [e for e in live_server.audit(tofu_set["id"]) if e["action"] == "update"]
    assert updates[-2]["details"] == {"enabled": [True, False]} and updates[-2]["reason"] == "pause"
    assert updates[-1]["details"] == {"enabled": [False, True]}  # alpha unchanged: not recorded


def test_revoke_needs_a_reason_and_restores_unsteered_answers_exactly(
        live_server: Any, tofu_set: dict[str, Any], while_active: dict[str, Any]) -> None:
    url = f"/v1/forget-sets/{tofu_set['id']}"
    missing = live_server.request("DELETE", url, "forget")
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "reason"
    audit_before = live_server.audit()
    revoked = live_server.request("DELETE", url, "forget", params={"reason": "request withdrawn"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    # Steering stops at once: the very next gate decision is closed.
    question = next(iter(while_active["forget"]))
    gate = live_server.request("POST", "/v1/gate", "compare", json={"prompt": question}).json()
    assert gate == {"matched": [], "steered": False}
    for prompt, before in list(while_active["forget"].items())[:3]:
        after = _compare(live_server, prompt)
        assert after["matched"] == [] and after["steered"]["text"] == before["unsteered"]["text"]
    audit_after = live_server.audit()
    assert audit_after[:len(audit_before)] == audit_before
    assert audit_after[-1]["action"] == "revoke" and audit_after[-1]["reason"] == "request withdrawn"
    assert live_server.request("DELETE", url, "forget", params={"reason": "again"}).status_code == 409
    assert live_server.request("PATCH", url, "forget", json={"alpha": 0.3}).status_code == 409


def test_subjects_given_at_registration_are_stored_and_shown(live_server: Any, live: Any) -> None:
    body = {**live.tiny_set("named", "Quillon Varrow paints lighthouses."), "subjects": ["Quillon Varrow"]}
    response = live_server.request("POST", "/v1/forget-sets", "forget", json=body)
    assert response.status_code == 202, response.text
    shown = live_server.request("GET", f"/v1/forget-sets/{response.json()['id']}", "forget").json()
    assert shown["subjects"] == ["Quillon Varrow"]
    assert {"build_phase", "build_progress"} <= set(shown)
    live_server.revoke(response.json()["id"])
