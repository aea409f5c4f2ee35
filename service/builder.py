"""Background forget-set builds for the guardit server (GUARD-IT offline step, arXiv 2605.12765).

One daemon thread polls the registry and runs ``Runtime.build_next`` (pending -> building ->
active | failed), one build at a time. A build cannot be interrupted: on shutdown the thread is
left to die with the process, and the next start requeues the set (``recover_interrupted``). With
``recover_stale_after_s`` > 0 the thread also requeues builds older than that while it serves, so a
build whose replica died is taken over by a surviving one without waiting for a restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from service.metrics import BUILD_SECONDS
from service.registry import InvalidTransitionError, NotFoundError
from steering.vectors import overall_fraction

if TYPE_CHECKING:
    from service.registry import Registry
    from service.runtime import Runtime

logger = logging.getLogger(__name__)

ACTOR = "system:builder"
RECOVERY_ACTOR = "system:recovery"

#: Build stages (``steering.vectors.ProgressFn``) as the phase names the registry shows.
PHASES: dict[str, str] = {"embed": "embed", "cluster": "cluster", "forget": "vectors", "retain": "vectors",
                          "calibrate": "calibrate"}


class ProgressWriter:
    """A ``ProgressFn`` that stores a build's phase and overall fraction in the registry.

    Writes at most one row update per ``min_interval_s`` (a new phase is written at once), so a
    build's hundreds of callbacks cost a handful of writes. The set is the one this process claimed
    (its latest ``build_start`` audit row names this host and pid), looked up at the first call.
    A failed write is logged and ignored: progress is a display, never a reason to fail a build.

    Args:
        registry: where the set lives.
        min_interval_s: least time between two writes within one phase.
    """

    def __init__(self, registry: Registry, *, min_interval_s: float = 0.5) -> None:
        self.registry = registry
        self.min_interval_s = min_interval_s
        self.fs_id: str | None = None
        self.writes = 0
        self._last_at = -float("inf")
        self._last_phase: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        phase = PHASES.get(stage, stage)
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_at < self.min_interval_s:
            return
        try:
            fs_id = self.fs_id or self._claimed_id()
            if fs_id is None:
                return
            fraction = overall_fraction(stage, done, total)
            self.registry.set_build_progress(fs_id, phase=phase, fraction=fraction)
        except Exception:  # noqa: BLE001 - see the class docstring
            logger.debug("build progress not recorded", exc_info=True)
            return
        self.fs_id, self._last_at, self._last_phase = fs_id, now, phase
        self.writes += 1

    def _claimed_id(self) -> str | None:
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for record in self.registry.list(status="building"):
            starts = [e for e in self.registry.audit(forget_set_id=record.id, limit=1000)
                      if e.action == "build_start"]
            if starts and all(starts[-1].details.get(k) == v for k, v in me.items()):
                return record.id
        return None


class BuildWorker:
    """Builds pending forget sets in a background thread.

    Args:
        runtime: the loaded runtime whose registry is polled.
        poll_interval_s: pause between polls when nothing is pending.
    """

    def __init__(self, runtime: Runtime, *, poll_interval_s: float = 0.5) -> None:
        self.runtime = runtime
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_recovery = 0.0
        self.busy = False

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start polling (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="guardit-builder", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Poll now (a set was just registered) instead of at the next interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout_s`` (a running build is not interrupted)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                logger.warning("a forget-set build is still running at shutdown; it will be requeued at "
                               "the next start")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.recover_stale()
            if not self.build_once():
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

    def recover_stale(self) -> list[str]:
        """Requeue (or fail) builds started more than ``recover_stale_after_s`` ago; returns their ids.

        Off when the setting is 0 (the default: one server, whose own start requeues its interrupted
        build). Several replicas set it above the longest build: a live build elsewhere is younger and
        left alone, a dead replica's build is taken over within that time plus one check interval.
        """
        stale = self.runtime.settings.recover_stale_after_s
        now = time.monotonic()
        if stale <= 0 or now < self._next_recovery:
            return []
        self._next_recovery = now + min(max(stale / 4, self.poll_interval_s), 60.0)
        try:
            touched = self.runtime.registry.recover_interrupted(actor=RECOVERY_ACTOR, stale_after_s=stale)
        except Exception:  # noqa: BLE001 - e.g. registry unreachable: try again at the next check
            logger.warning("stale-build recovery failed; retrying later", exc_info=True)
            return []
        for fs_id in touched:
            logger.warning("forget set %s: build older than %.0f s requeued or failed", fs_id, stale,
                           extra={"forget_set_id": fs_id})
        return touched

    def build_once(self) -> bool:
        """Build the oldest pending set, if any; returns True when one was claimed."""
        started = time.perf_counter()
        self.busy = True
        try:
            record = self.runtime.build_next(actor=ACTOR, progress=ProgressWriter(self.runtime.registry))
        except (InvalidTransitionError, NotFoundError) as exc:
            # Revoked while building: activate refuses and nothing is stored; that is the intent.
            logger.warning("forget-set build abandoned: %s", exc)
            return True
        except Exception:  # noqa: BLE001 - e.g. registry unreachable: keep polling, do not die
            logger.exception("forget-set build loop failed; retrying in %.1f s", self.poll_interval_s)
            return False
        finally:
            self.busy = False
        if record is None:
            return False
        seconds = time.perf_counter() - started
        BUILD_SECONDS.observe(seconds)
        logger.info("forget set %s build finished: %s in %.1f s", record.id, record.status, seconds,
                    extra={"forget_set_id": record.id, "status": record.status})
        return True
