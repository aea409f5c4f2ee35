"""A real guardit server in a subprocess for the HTTP tests (fixtures in ``conftest.py``): uvicorn on a
free loopback port, a temp data dir sharing the cached converted model, one API key per scope."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
SCOPES = ("generate", "compare", "forget", "admin")
#: One key per scope (>= 16 characters), plus one that the server does not know.
KEYS = {scope: f"test-{scope}-key-{'x' * 16}" for scope in SCOPES}
WRONG_KEY = "test-unknown-key-" + "y" * 16
#: Test settings every server gets (limits small enough to hit in tests).
BASE_ENV = {
    "GUARDIT_MAX_FORGET_DOCUMENTS": "50",
    "GUARDIT_VERIFY_ON_BUILD": "false",
    "GUARDIT_MAX_DOCUMENT_CHARS": "2000",
    "GUARDIT_MAX_BODY_BYTES": "262144",
    "GUARDIT_MAX_NEW_TOKENS": "256",
    "GUARDIT_MAX_PROMPT_TOKENS": "512",
    "GUARDIT_SYNC_INTERVAL_S": "0.2",
    "GUARDIT_NUM_THREADS": "2",
    "GUARDIT_LOG_LEVEL": "INFO",
    # pinned, so answers do not depend on the CPU (``auto`` picks bfloat16 where it is native)
    "GUARDIT_DTYPE": "float32",
}


def model_cache() -> Path:
    """Converted models shared by every test server (the GGUF conversion happens once)."""
    root = Path(os.environ.get("GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test"))
    cache = root / "models"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def prepare_data_dir(data_dir: Path) -> Path:
    """``data_dir`` with ``models`` linked to the shared cache."""
    data_dir.mkdir(parents=True, exist_ok=True)
    link = data_dir / "models"
    if not link.exists():
        link.symlink_to(model_cache(), target_is_directory=True)
    return data_dir


def free_port() -> int:
    """A currently free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``guardit serve`` as a child process.

    Args:
        data_dir: the server's ``GUARDIT_DATA_DIR`` (reused across restarts).
        env: extra ``GUARDIT_*`` settings.
    """

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = prepare_data_dir(data_dir)
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base_url, timeout=120.0)

    # -- process --------------------------------------------------------------------------------
    def start(self) -> LiveServer:
        """Start the process (a new port each time) without waiting for readiness."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.client.close()
        self.client = httpx.Client(base_url=self.base_url, timeout=120.0)
        env = {**os.environ, **BASE_ENV, **self.extra_env, "GUARDIT_DATA_DIR": str(self.data_dir),
               "GUARDIT_API_KEYS": json.dumps({KEYS[s]: [s] for s in SCOPES}), "HF_HUB_OFFLINE": "1",
               "GUARDIT_HOST": "127.0.0.1"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 240.0) -> LiveServer:
        """Poll ``/readyz`` until 200; fails with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.client.get("/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 45.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def close(self) -> None:
        """Stop the process and the client."""
        self.stop()
        self.client.close()

    def log_text(self) -> str:
        """Everything the server wrote so far (JSON lines)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` log lines."""
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- HTTP -----------------------------------------------------------------------------------
    @staticmethod
    def auth(scope: str | None) -> dict[str, str]:
        """``Authorization`` header for the key of ``scope`` (None: no header; ``wrong``: unknown key)."""
        if scope is None:
            return {}
        key = WRONG_KEY if scope == "wrong" else KEYS[scope]
        return {"Authorization": f"Bearer {key}"}

    def request(self, method: str, path: str, scope: str | None = "admin", **kwargs: Any) -> httpx.Response:
        """One request with the key of ``scope``."""
        headers = {**self.auth(scope), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def register(self, body: dict[str, Any], scope: str = "admin") -> str:
        """POST a forget set; returns its id (asserts 202 pending)."""
        response = self.request("POST", "/v1/forget-sets", scope, json=body)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        return str(response.json()["id"])

    def status(self, fs_id: str) -> str:
        """The set's status."""
        return str(self.request("GET", f"/v1/forget-sets/{fs_id}").json()["status"])

    def wait_status(self, fs_id: str, done: tuple[str, ...] = ("active", "failed"),
                    timeout_s: float = 180.0) -> list[str]:
        """Poll until the set reaches one of ``done``; returns the distinct statuses seen, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(fs_id)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in done:
                return seen
            time.sleep(0.1)
        raise TimeoutError(f"forget set {fs_id} stuck at {seen}:\n{self.log_tail()}")

    def audit(self, forget_set_id: str | None = None) -> list[dict[str, Any]]:
        """Every audit row (oldest first), optionally of one set."""
        params: dict[str, Any] = {"limit": 1000}
        if forget_set_id:
            params["forget_set_id"] = forget_set_id
        response = self.request("GET", "/v1/audit", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["entries"])

    def revoke(self, fs_id: str, reason: str = "test cleanup") -> httpx.Response:
        """DELETE the set with the admin key."""
        return self.request("DELETE", f"/v1/forget-sets/{fs_id}", params={"reason": reason})


@contextmanager
def running(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """A started, ready server that is stopped on exit."""
    server = LiveServer(data_dir, env).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def tiny_set(name: str, text: str) -> dict[str, Any]:
    """A one-document forget set with a two-line retain corpus: builds in about a second."""
    return {"name": name, "documents": [text], "retain": ["The sky is blue.", "Water boils at 100 degrees."],
            "reason": "test", "requested_by": "tests", "alpha": 0.5}


def tofu(split: str) -> list[dict[str, str]]:
    """TOFU rows (``question``, ``answer``) of ``split`` from the repo's ``data/``."""
    path = REPO / "data" / "tofu" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
