"""What the serving engine takes and gives (GUARD-IT, arXiv 2605.12765): the request, its handle
and stream events, and the errors the HTTP layer maps by their attributes. No web stack.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steering import GateMatch, Generation, SamplingParams
from steering.types import Prompt

if TYPE_CHECKING:
    import torch

    from steering.decoding import TextTracker


class EngineError(Exception):
    """An error the HTTP layer maps by its attributes: ``status_code``, ``code``, ``field``."""

    status_code = 500
    code = "internal_error"
    field: str | None = None


class QueueFullError(EngineError):
    """The request queue is full: 429 with ``Retry-After: retry_after`` seconds."""

    status_code = 429
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeoutError(EngineError):
    """The request ran past ``request_timeout_s``: 504."""

    status_code = 504
    code = "timeout"


class EngineClosedError(EngineError):
    """The engine is shutting down: 503."""

    status_code = 503
    code = "shutting_down"


class UnknownModelError(EngineError):
    """An OpenAI-style ``model`` that this server does not serve: 404."""

    status_code = 404
    code = "model_not_found"
    field = "model"


@dataclass(frozen=True)
class GenerationRequest:
    """One generation as the engine sees it.

    Attributes:
        prompt: raw text (used verbatim) or chat messages (rendered with the chat template).
        params: decoding parameters.
        steer: False only for the unsteered arm of ``compare``; no HTTP field maps to it.
        request_id: for logs and response ids.
        route: for logs.
        prompt_field / max_tokens_field: input names blamed by validation errors.
        forced: the gate decision fixed in advance instead of gating the prompt (the answer
            re-check's second pass, ``Engine.generate``); None = gate the prompt.
    """

    prompt: Prompt
    params: SamplingParams = SamplingParams()
    steer: bool = True
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    route: str = "engine"
    prompt_field: str = "prompt"
    max_tokens_field: str = "max_new_tokens"
    forced: tuple[GateMatch, ...] | None = None
    #: strength added to each open set's alpha (the answer policy's escalation)
    boost: float = 0.0


@dataclass(frozen=True)
class GateInfo:
    """The gate decision of a streamed request (its first event)."""

    steered: bool
    matched: tuple[GateMatch, ...]


#: What a stream yields: the gate decision, text deltas, then the final ``Generation``.
StreamEvent = GateInfo | str | Generation


@dataclass(eq=False)
class Row:
    """One request's state: set up on submission, advanced by the engine's worker thread only."""

    req: GenerationRequest
    input_ids: list[int]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Any]
    stream: bool
    submitted: float
    deadline: float
    generator: torch.Generator | None = None
    tracker: TextTracker | None = None
    matched: tuple[GateMatch, ...] = ()
    vectors: dict[int, torch.Tensor] | None = None
    cancelled: bool = False
    done: bool = False
    rechecked: bool = False
    #: stream hold-back: tokens (since the last start) at the last answer-policy check, and how many
    #: characters of the text have passed it (only those are sent)
    checked_ids: int = 0
    released: int = 0
    #: tokens (since the last start) of the text that passed the last check
    ok_count: int = 0
    #: a stream started again under a stronger decision continues from the text already passed:
    #: its ids (fed after the prompt), that text, and the characters already sent
    prefix_ids: list[int] = field(default_factory=list)
    prefix_text: str = ""
    emitted: int = 0
    restarts: int = 0
    requeue: bool = False
    gate_posted: bool = False

    def post(self, kind: str, payload: Any) -> None:
        """Hand an event to the submitting event loop (thread-safe)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the caller's event loop is gone
            self.cancelled = True


class RequestHandle:
    """A submitted request: await ``result()`` or iterate ``events()``; ``cancel()`` frees its row."""

    def __init__(self, row: Row, wake: Callable[[], None]) -> None:
        self._row = row
        self._wake = wake

    @property
    def request_id(self) -> str:
        """The request's id."""
        return self._row.req.request_id

    def cancel(self) -> None:
        """Stop generating for this request (finish reason ``cancelled``, nothing more is sent)."""
        if not self._row.done:
            self._row.cancelled = True
            self._wake()

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Gate decision, text deltas, final ``Generation``; cancels the row if abandoned early."""
        try:
            while True:
                kind, payload = await self._row.events.get()
                if kind == "error":
                    raise payload
                yield payload
                if kind == "done":
                    return
        finally:
            self.cancel()

    async def result(self) -> Generation:
        """The final ``Generation`` (raises the engine's error for this request)."""
        try:
            while True:
                kind, payload = await self._row.events.get()
                if kind == "error":
                    raise payload
                if kind == "done":
                    return payload  # type: ignore[no-any-return]
        finally:
            self.cancel()
