"""Throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir, 127.0.0.1 on a free port.

Runs the server as the ``postgres`` system user when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Durability is irrelevant for a throwaway server; these make initdb and CREATE DATABASE fast.
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL installation (binaries, driver or a non-root user to run it)."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server; ``url`` points at its ``postgres`` database."""

    host: str
    port: int
    user: str

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{name}"

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh, empty database and return its ``postgresql://`` URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.database_url(name)


def find_pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin``, else the directory ``pg_ctl`` on PATH resolves to."""
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:  # /usr/local/bin/pg_ctl is typically a symlink into /usr/lib/postgresql/<v>/bin
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres_server(start_timeout_s: int = 30) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server and stop it (and delete its files) on exit.

    Raises:
        PostgresUnavailable: No binaries, no psycopg, or running as root without a ``postgres`` user.
    """
    bindir = find_pg_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL binaries (initdb, pg_ctl, postgres) under "
            "/usr/lib/postgresql/*/bin or on PATH; apt-get install -y postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable("psycopg is not installed (pip install 'psycopg[binary]')") from exc
    run_as: dict[str, Any] = {}
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable(
                "running as root and no 'postgres' system user to run the server as"
            ) from exc
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    user = "postgres"
    tmp = Path(tempfile.mkdtemp(prefix="guardit-pg-"))
    data = tmp / "data"
    try:
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            env,
            run_as,
        )
        port = _start(bindir, data, tmp, env, run_as, start_timeout_s)
        logger.info("throwaway PostgreSQL (%s) on 127.0.0.1:%d in %s", bindir, port, tmp)
        try:
            yield PostgresServer(host="127.0.0.1", port=port, user=user)
        finally:
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                env=env,
                capture_output=True,
                check=False,
                **run_as,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(cmd: list[str], env: dict[str, str], run_as: dict[str, Any]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, **run_as)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")


def _start(
    bindir: Path, data: Path, tmp: Path, env: dict[str, str], run_as: dict[str, Any], timeout_s: int
) -> int:
    # The free port may be taken between probing and binding: retry with another one.
    last_error = ""
    for _ in range(3):
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} {_SERVER_OPTIONS}"
        done = subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(tmp / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(timeout_s),
                "start",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **run_as,
        )
        if done.returncode == 0:
            return port
        log = (tmp / "server.log").read_text(errors="replace") if (tmp / "server.log").exists() else ""
        last_error = f"{done.stdout}{done.stderr}{log[-2000:]}"
    raise RuntimeError(f"pg_ctl start failed 3 times: {last_error}")
