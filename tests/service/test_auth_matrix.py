"""Every route x every caller (no key, unknown key, each scope, admin) against a real server: 401 / 403 /
2xx exactly as SPEC.md says, auth decided before any body or query validation, keys never logged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
GEN = {"prompt": "Say hi.", "max_new_tokens": 1}
#: (name, method, path, scope the route needs; None = public)
ROUTES = [
    ("create", "POST", "/v1/forget-sets", "forget"),
    ("list", "GET", "/v1/forget-sets", "forget"),
    ("get", "GET", "/v1/forget-sets/{id}", "forget"),
    ("patch", "PATCH", "/v1/forget-sets/{id}", "forget"),
    ("revoke", "DELETE", "/v1/forget-sets/{id}", "forget"),
    ("audit", "GET", "/v1/audit", "admin"),
    ("gate", "POST", "/v1/gate", "compare"),
    ("generate", "POST", "/v1/generate", "generate"),
    ("compare", "POST", "/v1/compare", "compare"),
    ("chat", "POST", "/v1/chat/completions", "generate"),
    ("completions", "POST", "/v1/completions", "generate"),
    ("models", "GET", "/v1/models", "generate"),
    ("metrics", "GET", "/metrics", None),
    ("healthz", "GET", "/healthz", None),
    ("readyz", "GET", "/readyz", None),
    ("console", "GET", "/", None),
]
CALLERS = [None, "wrong", "generate", "compare", "forget", "admin"]
BODIES: dict[str, dict[str, Any]] = {
    "patch": {"threshold": 0.99},
    "gate": {"prompt": "What does the ferret collect?"},
    "generate": GEN,
    "compare": GEN,
    "chat": {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1},
    "completions": {"model": MODEL, "prompt": "Hello", "max_tokens": 1},
}


def expected_status(scope: str | None, caller: str | None) -> int | str:
    """200 for public routes; 401 without a known key; 2xx with the scope or admin; else 403."""
    if scope is None:
        return 200
    if caller in (None, "wrong"):
        return 401
    return "2xx" if caller in (scope, "admin") else 403


@pytest.fixture(scope="module")
def matrix_set(live_server: Any, live: Any) -> Iterator[str]:
    """A small forget set for the ``{id}`` routes, revoked afterwards."""
    fs_id = live_server.register(live.tiny_set("matrix", "Zorblax the ferret collects antique brass spoons."))
    yield fs_id
    live_server.revoke(fs_id)


def _call(server: Any, live: Any, name: str, method: str, path: str, caller: str | None,
          fs_id: str, allowed: bool) -> Any:
    if name == "revoke" and allowed:  # each successful revoke needs a set of its own
        fs_id = server.register(live.tiny_set("revoke-me", f"Revocable note {caller} about teal kites."))
    kwargs: dict[str, Any] = {}
    if name in BODIES:
        kwargs["json"] = BODIES[name]
    elif name == "create":
        kwargs["json"] = live.tiny_set("created", "Quillon the owl hoards violet marbles.")
    if name == "revoke":
        kwargs["params"] = {"reason": "scope matrix"}
    return server.request(method, path.replace("{id}", fs_id), caller, **kwargs)


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: f"key={c}")
@pytest.mark.parametrize(("name", "method", "path", "scope"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_route_answers_each_caller_by_scope(live_server: Any, live: Any, matrix_set: str, name: str,
                                                  method: str, path: str, scope: str | None,
                                                  caller: str | None) -> None:
    want = expected_status(scope, caller)
    response = _call(live_server, live, name, method, path, caller, matrix_set, allowed=want == "2xx")
    if want == "2xx":
        assert 200 <= response.status_code < 300, response.text
        if name == "create":  # do not leave it steering later tests
            assert live_server.revoke(response.json()["id"]).status_code == 200
        return
    assert response.status_code == want, response.text
    if want in (401, 403):
        error = response.json()["error"]
        assert error["code"] == ("unauthorized" if want == 401 else "forbidden")
        assert error["field"] is None
    if want == 401:
        assert response.headers["www-authenticate"] == "Bearer"


BODY_ROUTES = [(n, m, p, s) for n, m, p, s in ROUTES if n in BODIES or n == "create"]


@pytest.mark.parametrize(("name", "method", "path", "scope"), BODY_ROUTES, ids=[r[0] for r in BODY_ROUTES])
@pytest.mark.parametrize("payload", [b"{not json", b'{"documents": 3, "threshold": "high", "prompt": []}'],
                         ids=["malformed", "wrong-types"])
def test_auth_is_decided_before_the_body_is_validated(live_server: Any, matrix_set: str, name: str,
                                                     method: str, path: str, scope: str,
                                                     payload: bytes) -> None:
    url = path.replace("{id}", matrix_set)
    headers = {"Content-Type": "application/json"}
    assert live_server.request(method, url, None, content=payload, headers=headers).status_code == 401
    assert live_server.request(method, url, "wrong", content=payload, headers=headers).status_code == 401
    other = "generate" if scope != "generate" else "forget"
    assert live_server.request(method, url, other, content=payload, headers=headers).status_code == 403
    assert live_server.request(method, url, scope, content=payload, headers=headers).status_code == 422


def test_auth_is_decided_before_query_validation(live_server: Any, matrix_set: str) -> None:
    revoke = f"/v1/forget-sets/{matrix_set}"  # no ?reason=
    assert live_server.request("DELETE", revoke, None).status_code == 401
    assert live_server.request("DELETE", revoke, "compare").status_code == 403
    assert live_server.request("GET", "/v1/audit", "forget", params={"limit": "lots"}).status_code == 403
    invalid = live_server.request("GET", "/v1/audit", "admin", params={"limit": "lots"})
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "limit"


@pytest.mark.parametrize(("header", "status"), [
    ("Basic {key}", 401), ("Bearer", 401), ("Token {key}", 401), ("{key}", 401), ("bearer {key}", 200),
    ("Bearer  {key}", 200)])
def test_only_a_bearer_token_authenticates(live_server: Any, live: Any, header: str, status: int) -> None:
    value = header.format(key=live.KEYS["forget"])
    assert live_server.client.get("/v1/forget-sets", headers={"Authorization": value}).status_code == status


def test_callers_appear_in_the_log_and_audit_by_key_id_never_by_key(live_server: Any, live: Any,
                                                                     matrix_set: str) -> None:
    from service.auth import key_id

    audit = live_server.audit(matrix_set)
    assert audit[0]["action"] == "create" and audit[0]["actor"] == key_id(live.KEYS["admin"])
    log = live_server.log_text()
    assert key_id(live.KEYS["admin"]) in log
    for secret in [*live.KEYS.values(), live.WRONG_KEY]:
        assert secret not in log


def test_local_dev_mode_grants_every_scope_on_loopback_only() -> None:
    from pydantic import ValidationError

    from service.auth import DEV_KEY_ID, KeyStore
    from service.settings import Settings

    with pytest.raises(ValidationError, match="GUARDIT_API_KEYS"):
        Settings(host="0.0.0.0", api_keys=None)
    store = KeyStore(Settings(host="127.0.0.1", api_keys=None).api_keys)
    assert store.dev_mode and all(store.authorize(None, s) == DEV_KEY_ID for s in ("generate", "admin"))


def test_admin_implies_every_scope_and_keys_match_only_exactly() -> None:
    from service.auth import KeyStore, key_id
    from service.errors import ApiError

    store = KeyStore({"a" * 20: ["admin"], "f" * 20: ["forget"]})
    assert {store.authorize(f"Bearer {'a' * 20}", s) for s in ("generate", "compare", "forget", "admin")} == \
        {key_id("a" * 20)}
    for near_miss in ("a" * 19, "a" * 21, "A" * 20):
        with pytest.raises(ApiError) as caught:
            store.authorize(f"Bearer {near_miss}", "generate")
        assert caught.value.status == 401
    with pytest.raises(ApiError) as forbidden:
        store.authorize(f"Bearer {'f' * 20}", "admin")
    assert forbidden.value.status == 403 and "f" * 20 not in forbidden.value.message
