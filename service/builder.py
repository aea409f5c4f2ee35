"""Background forget-set builds for the guardit server (GUARD-IT offline step, arXiv 2605.12765).

One daemon thread polls the registry and runs ``Runtime.build_next`` (pending -> building ->
active | failed), one build at a time. A build cannot be interrupted: on shutdown the thread is
left to die with the process, and the next start requeues the set (``recover_interrupted``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from service.metrics import BUILD_SECONDS
from service.registry import InvalidTransitionError, NotFoundError

if TYPE_CHECKING:
    from service.runtime import Runtime

logger = logging.getLogger(__name__)

ACTOR = "system:builder"


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
            if not self.build_once():
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()

    def build_once(self) -> bool:
        """Build the oldest pending set, if any; returns True when one was claimed."""
        started = time.perf_counter()
        self.busy = True
        try:
            record = self.runtime.build_next(actor=ACTOR)
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
