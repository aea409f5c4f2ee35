"""Admission in front of the serving engine's batch (GUARD-IT, arXiv 2605.12765): request checks and
tokenization (run off the event loop), the bounded wait queue, ``Retry-After`` when it is full, and
deadlines of requests still waiting.

The worker thread and the event loop meet here: the queue and its condition variable are the only
state both sides touch.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from service.generation import EngineClosedError, GenerationRequest, QueueFullError, RequestHandle, Row
from service.metrics import QUEUE_DEPTH
from steering import ConfigError
from steering.forget_set import chat_prompt
from steering.guard import eos_ids

if TYPE_CHECKING:
    from service.settings import Settings

T = TypeVar("T")

#: Start value of the mean request latency behind ``Retry-After`` (seconds), before any request ended.
INITIAL_LATENCY_S = 5.0


class EngineTokenizer:
    """The engine's private tokenizer copy and the lock its encoders share.

    Fast tokenizers are not safe to share with the forget-set builder thread, which pads (mutates) the
    runtime's tokenizer; the copy is made once, when the engine starts.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = copy.deepcopy(tokenizer)
        self.eos: set[int] = eos_ids(self.tokenizer)
        self.lock = threading.Lock()

    @property
    def pad_id(self) -> int:
        """The id rows are left-padded with (masked out)."""
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (thread-safe)."""
        with self.lock:
            ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids


class Admission:
    """Checks, tokenizes and queues requests for the worker; the worker takes them at token boundaries.

    Args:
        settings: ``queue_size``, ``max_batch_size``, ``batch_wait_ms``, ``request_timeout_s``,
            ``max_new_tokens``, ``max_prompt_tokens``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: deque[Row] = deque()
        self.cv = threading.Condition()
        self.accepting = True
        self.stopping = False
        #: work the event loop hands to the worker thread, run between decode steps
        self.chores: deque[Callable[[], None]] = deque()
        self._latency_ewma = INITIAL_LATENCY_S

    def __len__(self) -> int:
        return len(self.queue)

    # -- event-loop side ---------------------------------------------------------------------------
    def tokenize(self, tok: EngineTokenizer, req: GenerationRequest) -> list[int]:
        """Check the request's limits and return its prompt's token ids.

        Raises:
            ConfigError: a parameter out of range, an empty or too long prompt (422, naming the field).
        """
        p, s = req.params, self.settings
        if not 1 <= p.max_new_tokens <= s.max_new_tokens:
            raise ConfigError(f"expected {req.max_tokens_field} in [1, {s.max_new_tokens}], "
                              f"found {p.max_new_tokens}", field=req.max_tokens_field)
        if not (p.temperature >= 0 and math.isfinite(p.temperature)):
            raise ConfigError(f"expected temperature >= 0, found {p.temperature}", field="temperature")
        if not 0 < p.top_p <= 1:
            raise ConfigError(f"expected top_p in (0, 1], found {p.top_p}", field="top_p")
        with tok.lock:
            text = req.prompt if isinstance(req.prompt, str) else chat_prompt(tok.tokenizer, req.prompt)
            ids: list[int] = tok.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise ConfigError(f"expected a non-empty {req.prompt_field}, found no tokens", field=req.prompt_field)
        if len(ids) > s.max_prompt_tokens:
            raise ConfigError(f"expected at most {s.max_prompt_tokens} prompt tokens, found {len(ids)}",
                              field=req.prompt_field)
        return ids

    def enqueue(self, prepared: Sequence[tuple[GenerationRequest, list[int]]], *, stream: bool, running: int,
                wake: Callable[[], None]) -> list[RequestHandle]:
        """Queue tokenized requests (all or none) on behalf of the running event loop.

        Args:
            prepared: (request, prompt ids) pairs.
            stream: whether the callers iterate events (deltas) or await one result.
            running: rows in the batch now (for ``Retry-After``).
            wake: what a handle calls to wake the worker on cancellation.

        Raises:
            EngineClosedError: the engine is shutting down (503).
            QueueFullError: no room for all of them (429 with ``Retry-After``).
        """
        with self.cv:
            rows = self._new_rows(prepared, stream=stream, waiting=len(self.queue), running=running)
            self.queue.extend(rows)
            QUEUE_DEPTH.set(len(self.queue))
            self.cv.notify_all()
        return [RequestHandle(row, wake) for row in rows]

    def admit(self, prepared: Sequence[tuple[GenerationRequest, list[int]]], *, stream: bool, waiting: int,
              running: int) -> list[Row]:
        """Rows for tokenized requests (all or none) that wait elsewhere than in this queue (the vLLM
        engine's scheduler); the same shutdown check and the same bound as ``enqueue``.

        Args:
            prepared: (request, prompt ids) pairs.
            stream: whether the callers iterate events (deltas) or await one result.
            waiting: requests waiting for a slot there now (held to ``queue_size``).
            running: requests running there now (for ``Retry-After``).

        Raises:
            EngineClosedError: the engine is shutting down (503).
            QueueFullError: no room for all of them (429 with ``Retry-After``).
        """
        with self.cv:
            return self._new_rows(prepared, stream=stream, waiting=waiting, running=running)

    def _new_rows(self, prepared: Sequence[tuple[GenerationRequest, list[int]]], *, stream: bool, waiting: int,
                  running: int) -> list[Row]:
        """Rows for ``prepared`` once the engine accepts and ``waiting`` leaves room (``cv`` held)."""
        if not self.accepting:
            raise EngineClosedError("expected a running engine, found it shutting down")
        if waiting + len(prepared) > self.settings.queue_size:
            raise QueueFullError(f"expected a free queue slot, found {waiting} requests queued",
                                 retry_after=self._retry_after(waiting, running))
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        return [Row(req, ids, loop, asyncio.Queue(), stream, now, now + self.settings.request_timeout_s)
                for req, ids in prepared]

    def on_worker(self, fn: Callable[[], T]) -> Awaitable[T]:
        """Run ``fn`` on the worker thread between two decode steps; await its result.

        The answer policy's checks run the embedder (torch): run beside the decode step they would
        put more torch threads than cores on the CPU and slow both, so they take turns with it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, exc: BaseException | None) -> None:
            if future.done():  # the caller gave up (cancelled)
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def chore() -> None:
            try:
                result, exc = fn(), None
            except Exception as error:  # noqa: BLE001 - handed to the awaiting caller
                result, exc = None, error
            try:
                loop.call_soon_threadsafe(settle, result, exc)
            except RuntimeError:  # the caller's event loop is gone
                pass

        with self.cv:
            if self.stopping:
                raise EngineClosedError("expected a running engine, found it shut down")
            self.chores.append(chore)
            self.cv.notify_all()
        return future

    def run_chores(self) -> None:
        """Run the work handed over by ``on_worker`` (worker side)."""
        while True:
            with self.cv:
                if not self.chores:
                    return
                chore = self.chores.popleft()
            chore()

    def _retry_after(self, waiting: int, running: int) -> int:
        """Seconds until a slot is likely free: batches ahead times the mean request latency."""
        waves = (waiting + running) / self.settings.max_batch_size
        return int(min(60, max(1, math.ceil(waves * self._latency_ewma))))

    def record_latency(self, seconds: float) -> None:
        """A request ended after ``seconds``: update the mean behind ``Retry-After``."""
        self._latency_ewma = 0.8 * self._latency_ewma + 0.2 * seconds

    def wake(self) -> None:
        """Wake the worker (a cancellation, a new request, shutdown)."""
        with self.cv:
            self.cv.notify_all()

    def stop_accepting(self) -> None:
        """Refuse new requests from now on (queued ones still run)."""
        with self.cv:
            self.accepting = False

    def stop(self) -> None:
        """Tell the worker to leave its loop."""
        with self.cv:
            self.stopping = True
            self.cv.notify_all()

    # -- worker side -------------------------------------------------------------------------------
    def wait_for_work(self, running: int) -> bool:
        """Block until there is something to do; False when the worker must stop.

        With the batch idle, give more requests ``batch_wait_ms`` to arrive, so a burst starts as one
        batch rather than as a lone row that the rest must then join.
        """
        with self.cv:
            while not self.queue and not running and not self.chores and not self.stopping:
                self.cv.wait()
            if self.stopping:
                return False
            if not running and not self.chores:
                until = time.monotonic() + self.settings.batch_wait_ms / 1000.0
                while len(self.queue) < self.settings.max_batch_size and not self.stopping:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self.cv.wait(left)
        return True

    def take(self, room: int, now: float) -> tuple[list[Row], list[Row]]:
        """Up to ``room`` waiting rows, oldest first, and the waiting rows dropped because they were
        cancelled or ran past their deadline: (taken, dropped)."""
        with self.cv:
            dropped = [r for r in self.queue if r.cancelled or now > r.deadline]
            for row in dropped:
                self.queue.remove(row)
            taken = [self.queue.popleft() for _ in range(min(max(room, 0), len(self.queue)))]
            QUEUE_DEPTH.set(len(self.queue))
        return taken, dropped

    def requeue_first(self, rows: Sequence[Row]) -> None:
        """Put rows that were running back at the head of the queue, in order (they start again)."""
        with self.cv:
            for row in reversed(rows):
                row.requeue = False
                self.queue.appendleft(row)
            QUEUE_DEPTH.set(len(self.queue))

    def drain(self) -> list[Row]:
        """Empty the queue and return what was in it (shutdown)."""
        with self.cv:
            rows = list(self.queue)
            self.queue.clear()
            QUEUE_DEPTH.set(0)
        return rows
