"""Bearer-key authentication with scopes for the guardit HTTP API (SPEC.md, "Auth").

Keys come from ``GUARDIT_API_KEYS``; every comparison is constant-time over all keys. A caller is
named in logs and the audit trail by a key id (``key:`` + 8 hex of the key's SHA-256), never by the
key. Without keys the server is in local dev mode: loopback only, every scope, caller ``dev``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from service.errors import ApiError
from service.settings import SCOPES, Settings

logger = logging.getLogger(__name__)

DEV_KEY_ID = "dev"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_id(key: str) -> str:
    """The non-secret id of an API key: ``key:`` + the first 8 hex digits of its SHA-256."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps even the key's length out of the timing.
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class _Key:
    digest: bytes
    id: str
    scopes: frozenset[str]


class KeyStore:
    """The configured keys, or dev mode when there are none.

    Args:
        api_keys: ``{"<key>": ["<scope>", ...]}`` or None for local dev mode.
    """

    def __init__(self, api_keys: dict[str, list[str]] | None) -> None:
        self.dev_mode = api_keys is None
        self._keys = tuple(_Key(_digest(k), key_id(k), frozenset(SCOPES if "admin" in s else s))
                           for k, s in (api_keys or {}).items())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        """The keys of ``settings``."""
        return cls(settings.api_keys)

    def lookup(self, presented: str) -> _Key | None:
        """The key equal to ``presented``; compares against every key so timing reveals nothing."""
        candidate = _digest(presented)
        found: _Key | None = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key.digest):
                found = key
        return found

    def authorize(self, authorization: str | None, scope: str) -> str:
        """The caller's key id if ``authorization`` (a ``Bearer`` header) grants ``scope``.

        Raises:
            ApiError: 401 for a missing, malformed or unknown key; 403 when the key lacks the scope.
        """
        return self.caller(authorization, scope)[0]

    def caller(self, authorization: str | None, scope: str) -> tuple[str, frozenset[str]]:
        """``(key id, every scope the key holds)`` if ``authorization`` grants ``scope``.

        Raises:
            ApiError: 401 for a missing, malformed or unknown key; 403 when the key lacks the scope.
        """
        if self.dev_mode:
            return DEV_KEY_ID, frozenset(SCOPES)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized",
                           "expected an 'Authorization: Bearer <key>' header, found none",
                           headers=_CHALLENGE)
        key = self.lookup(token.strip())
        if key is None:
            raise ApiError(401, "unauthorized", "expected a known API key, found an unknown one",
                           headers=_CHALLENGE)
        if scope not in key.scopes:
            raise ApiError(403, "forbidden",
                           f"expected a key with scope '{scope}', found {key.id} without it")
        return key.id, key.scopes


def require_scope(scope: str) -> Callable[[Request], Awaitable[str]]:
    """A FastAPI dependency that returns the caller's key id when its key grants ``scope``.

    It reads only the ``Authorization`` header, so it runs (and fails with 401/403) before any body
    or query validation of the route.

    Args:
        scope: one of ``generate``, ``compare``, ``forget``, ``admin`` (``admin`` implies all).

    Returns:
        The dependency callable.
    """
    if scope not in SCOPES:
        raise ValueError(f"expected a scope in {SCOPES}, found {scope!r}")

    async def dependency(request: Request) -> str:  # async: no thread hop for a header check
        store: KeyStore | None = getattr(request.app.state, "keys", None)
        if store is None:  # an app not built by create_app: fall back to its settings
            store = request.app.state.keys = KeyStore.from_settings(request.app.state.settings)
        caller, scopes = store.caller(request.headers.get("authorization"), scope)
        request.state.key_id, request.state.scopes = caller, scopes
        return caller

    dependency.__name__ = f"require_scope_{scope}"
    dependency.scope = scope  # type: ignore[attr-defined]  # read by service.openapi
    return dependency
