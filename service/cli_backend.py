"""Where a ``guardit`` command runs: on a guardit server over HTTP (``GUARDIT_URL``), or in this process
on the local registry through the same ``Runtime`` and ``Engine`` the server uses (GUARD-IT,
arXiv 2605.12765). Both answer with the HTTP response shapes (SPEC.md), so the CLI prints one way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeAlias

from pydantic import BaseModel, ValidationError

from service.db_models import FINAL
from service.protocol.compare import CompareRequest, compare_response, gate_response
from service.protocol.forget import ForgetSetCreateRequest, forget_set_response
from service.protocol.generate import GenerateRequest, generate_response
from service.registry import Registry
from service.settings import Settings
from steering.vectors import ProgressFn

# Inside the backends the name ``list`` is a method, so their annotations use these aliases.
_Rows: TypeAlias = list[dict[str, Any]]
_Texts: TypeAlias = list[str]


class CliError(Exception):
    """A user-facing error: printed, exit status 1."""

    def __init__(self, message: str, *, code: str = "invalid_request", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def validated(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """``model(**body)`` with a pydantic error turned into a ``CliError`` naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise CliError(f"{field}: {first['msg']}",
                       field=str(first["loc"][0]) if first["loc"] else None) from exc


class LocalBackend:
    """The registry in ``GUARDIT_DATA_DIR`` (or ``GUARDIT_DATABASE_URL``); the model loads on first need."""

    remote = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self._runtime: Any = None

    def where(self) -> str:
        """One line for stderr: what this command works on."""
        return where(self.settings)

    @property
    def registry(self) -> Registry:
        """The registry, opened on first use (cheap: no model)."""
        if self._registry is None:
            self._registry = Registry.for_data_dir(self.settings.data_dir, self.settings.database_url)
        return self._registry

    @property
    def runtime(self) -> Any:
        """The server's runtime on this registry (the model loads when first used)."""
        if self._runtime is None:
            from service.runtime import Runtime

            self._runtime = Runtime(self.settings, registry=self.registry)
        return self._runtime

    # -- forget sets --------------------------------------------------------------------------
    def register(self, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
        """Validate and store as ``pending``; returns the record."""
        reg = validated(ForgetSetCreateRequest, body).to_registration()
        return _record(self.runtime.register(reg, actor=actor))

    def build(self, fs_id: str, *, actor: str, progress: ProgressFn | None, timeout_s: float,
              on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Build pending sets here until ``fs_id`` ends; if a server on the same registry claimed it,
        follow that build instead."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.get(fs_id)
            if record["status"] in FINAL:
                return record
            if on_poll is not None:
                on_poll(record)
            if self.runtime.build_next(actor=actor, progress=progress) is None:
                if time.monotonic() > deadline:
                    return record
                time.sleep(0.5)

    def get(self, fs_id: str) -> dict[str, Any]:
        """One record."""
        return _record(self.registry.get(fs_id))

    def list(self, status: str | None) -> _Rows:
        """Every record, newest first."""
        return [_record(r) for r in self.registry.list(status=status)]

    def revoke(self, fs_id: str, reason: str, *, actor: str) -> dict[str, Any]:
        """Revoke; the record afterwards."""
        return _record(self.registry.revoke(fs_id, reason=reason, actor=actor))

    # -- generation ---------------------------------------------------------------------------
    def generate(self, body: dict[str, Any], *, ab: bool) -> dict[str, Any]:
        """``/v1/generate`` (or ``/v1/compare`` with ``ab``) through the server's engine, in this process."""
        from service.engine_vllm import engine_for

        request = validated(CompareRequest if ab else GenerateRequest, body)
        runtime = self.runtime
        req = request.to_request(request_id=uuid.uuid4().hex, route="cli", settings=self.settings)

        # One person waits for one answer here (Ctrl-C stops it): the server's per-request limit, which
        # protects a shared queue, would only turn a slow machine's answer into an error.
        settings = self.settings.model_copy(update={"request_timeout_s": 7 * 24 * 3600.0})

        async def run() -> dict[str, Any]:
            engine = engine_for(runtime, settings)
            try:
                if ab:
                    steered, unsteered = await engine.compare(req)
                    return compare_response(steered, unsteered).model_dump()
                return generate_response(await engine.generate(req)).model_dump()
            finally:
                await engine.shutdown(drain_timeout=0.0)

        return asyncio.run(run())

    def gate(self, prompts: _Texts) -> _Rows:
        """``/v1/gate`` for each prompt: the decision the engine takes before generating."""
        runtime = self.runtime
        guard = runtime.guard
        runtime.sync()
        return [gate_response(m).model_dump() for m in guard.gate(prompts)]

    def close(self) -> None:
        """Release the registry."""
        if self._registry is not None:
            self._registry.close()


def _record(record: Any) -> dict[str, Any]:
    return forget_set_response(record.to_dict()).model_dump()


class RemoteBackend:
    """A running guardit server (``GUARDIT_URL``, key ``GUARDIT_API_KEY``)."""

    remote = True

    def __init__(self, url: str, api_key: str | None, *, timeout_s: float = 600.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def where(self) -> str:
        """One line for stderr: what this command works on."""
        return f"server {self.url}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; an error body becomes a ``CliError`` with the server's code and field."""
        import httpx

        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"expected a guardit server answering at {self.url}, found: {exc}",
                           code="unavailable") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_error:
            error = data.get("error") if isinstance(data, dict) else None
            if not isinstance(error, dict):
                error = {"code": "http_error", "message": f"{response.status_code} {response.reason_phrase}"}
            raise CliError(f"{error.get('message')} (HTTP {response.status_code})",
                           code=str(error.get("code") or "http_error"), field=error.get("field"))
        return data

    def register(self, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
        """``POST /v1/forget-sets``: the set is built by the server; returns ``{id, status}``."""
        del actor  # the server audits the key
        if not body.get("subjects"):
            body.pop("subjects", None)
        return dict(self.call("POST", "/v1/forget-sets", json=body))

    def get(self, fs_id: str) -> dict[str, Any]:
        """One record."""
        return dict(self.call("GET", f"/v1/forget-sets/{fs_id}"))

    def list(self, status: str | None) -> _Rows:
        """Every record, newest first."""
        params = {"status": status} if status else None
        return list(self.call("GET", "/v1/forget-sets", params=params)["forget_sets"])

    def revoke(self, fs_id: str, reason: str, *, actor: str) -> dict[str, Any]:
        """``DELETE /v1/forget-sets/{id}``."""
        del actor
        return dict(self.call("DELETE", f"/v1/forget-sets/{fs_id}", params={"reason": reason}))

    def generate(self, body: dict[str, Any], *, ab: bool) -> dict[str, Any]:
        """``POST /v1/generate`` or ``/v1/compare``."""
        return dict(self.call("POST", "/v1/compare" if ab else "/v1/generate", json=body))

    def gate(self, prompts: _Texts) -> _Rows:
        """``POST /v1/gate`` per prompt."""
        return [dict(self.call("POST", "/v1/gate", json={"prompt": p})) for p in prompts]

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def where(settings: Settings) -> str:
    """What a command with these settings works on, in words (no connection is opened)."""
    if settings.url:
        return f"server {settings.url.rstrip('/')}"
    if settings.database_url:
        from sqlalchemy.engine import make_url

        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        return f"local registry {shown} (no GUARDIT_URL: working in this process)"
    return f"local registry in {settings.data_dir} (no GUARDIT_URL: working in this process)"


def open_backend(settings: Settings) -> LocalBackend | RemoteBackend:
    """The server when ``settings.url`` is set, else this process on the local registry."""
    if settings.url:
        return RemoteBackend(settings.url, settings.api_key)
    return LocalBackend(settings)
