"""Residual-stream hooks for GUARD-IT (arXiv 2605.12765): read layer outputs, steer them with Eq. 8.

Hooks are registered once per (model, layer). What a forward pass does is decided by an explicit
per-call context (a ``SteeringPlan`` per layer, or a capture request) held in context variables, so
concurrent callers on other threads never see each other's plans and a closed gate touches nothing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

import kernels
from steering.errors import ConfigError, SteeringError
from steering.layers import decoder_blocks


@dataclass(frozen=True)
class SteeringPlan:
    """Steering of one forward batch at one layer.

    Attributes:
        row_vector: ``[batch]`` int32 index into ``vectors`` per batch row; -1 leaves the row untouched.
        vectors: ``[n_vectors, d_model]`` steering vectors (already scaled, Eq. 7).
        alpha: strength per vector ``[n_vectors]`` or one float for all (Eq. 8).
    """

    row_vector: torch.Tensor
    vectors: torch.Tensor
    alpha: torch.Tensor | float = 1.0

    def __post_init__(self) -> None:
        rows, n_vectors = self.row_vector, self.vectors.shape[0]
        if rows.numel() and (int(rows.min()) < -1 or int(rows.max()) >= n_vectors):
            raise SteeringError(f"expected row_vector entries in [-1, {n_vectors - 1}], found "
                                f"[{int(rows.min())}, {int(rows.max())}]")

    @property
    def active(self) -> bool:
        """True when at least one row is steered."""
        return bool((self.row_vector >= 0).any())


@dataclass
class Capture:
    """Holder for a captured layer output ``[batch, seq, d_model]`` (float32)."""

    stop: bool
    output: torch.Tensor | None = None


class StopForward(Exception):
    """Raised by a capture hook to end a forward pass early (later layers are not needed)."""


@dataclass
class _LayerHook:
    handle: Any
    calls: int = 0
    steered_calls: int = 0


# owner id (one ResidualHooks object) -> layer -> what to do. Keyed by owner so a plan set through
# one hooks object never reaches another object's hooks on the same or another model.
# Never mutated in place: every change sets a new dict (``{**old, id: ...}``), so the shared empty
# default cannot leak state between contexts.
_EMPTY: dict[int, Any] = {}
_PLANS: contextvars.ContextVar[dict[int, dict[int, SteeringPlan]]] = contextvars.ContextVar("plans")
_CAPTURE: contextvars.ContextVar[dict[int, dict[int, Capture]]] = contextvars.ContextVar("capture")


@dataclass
class ResidualHooks:
    """Forward hooks on decoder-block outputs (site ``layers.{i}.resid_post``) of one model.

    Register once per model; ``steer`` and ``capture`` set what the next forward passes do.
    """

    model: torch.nn.Module
    _hooks: dict[int, _LayerHook] = field(default_factory=dict)

    def ensure(self, layer: int) -> None:
        """Register the hook on block ``layer`` unless it already is."""
        if layer in self._hooks:
            return
        blocks = decoder_blocks(self.model)
        if not 0 <= layer < len(blocks):
            raise ConfigError(f"expected layer in [0, {len(blocks) - 1}], found {layer}", field="layer")
        self._hooks[layer] = _LayerHook(blocks[layer].register_forward_hook(self._make_hook(layer)))

    def _make_hook(self, layer: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            state = self._hooks[layer]
            state.calls += 1
            capture = _CAPTURE.get(_EMPTY).get(id(self), {}).get(layer)
            plan = _PLANS.get(_EMPTY).get(id(self), {}).get(layer)
            if capture is None and plan is None:
                return None  # gate closed: the hidden states are not touched at all
            hidden = output[0] if isinstance(output, tuple) else output  # [batch, seq, d_model]
            if capture is not None:
                capture.output = hidden.detach().float().clone()
                if capture.stop:
                    raise StopForward
            if plan is None or not plan.active:
                return None
            state.steered_calls += 1
            steered = apply_plan(hidden, plan)
            if isinstance(output, tuple):
                return (steered, *output[1:])
            return steered

        return hook

    def calls(self, layer: int) -> tuple[int, int]:
        """(forward calls, steered calls) seen by the hook at ``layer``; for tests and metrics."""
        state = self._hooks[layer]
        return state.calls, state.steered_calls

    @contextmanager
    def steer(self, plans: dict[int, SteeringPlan]) -> Iterator[None]:
        """Apply ``plans`` (layer -> plan) to forward passes made inside the block."""
        for layer in plans:
            self.ensure(layer)
        token = _PLANS.set({**_PLANS.get(_EMPTY), id(self): plans})
        try:
            yield
        finally:
            _PLANS.reset(token)

    @contextmanager
    def capture(self, layer: int, *, stop: bool = True) -> Iterator[Capture]:
        """Capture block ``layer``'s output; with ``stop`` the forward pass ends there."""
        self.ensure(layer)
        holder = Capture(stop=stop)
        token = _CAPTURE.set({**_CAPTURE.get(_EMPTY), id(self): {layer: holder}})
        try:
            yield holder
        finally:
            _CAPTURE.reset(token)

    def remove(self) -> None:
        """Remove every hook; the model is back to its unhooked self."""
        for state in self._hooks.values():
            state.handle.remove()
        self._hooks.clear()


def apply_plan(hidden: torch.Tensor, plan: SteeringPlan) -> torch.Tensor:
    """Eq. 8 on ``hidden`` ``[batch, seq, d_model]`` with a per-row vector index, every position."""
    batch, seq, width = hidden.shape
    if plan.row_vector.shape != (batch,):
        raise SteeringError(f"expected row_vector of shape ({batch},), found {tuple(plan.row_vector.shape)}")
    rows = plan.row_vector.to(device=hidden.device, dtype=torch.int32)
    token_rows = rows.repeat_interleave(seq)  # [batch * seq]
    vectors = plan.vectors.to(device=hidden.device, dtype=hidden.dtype)
    alpha = plan.alpha
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(device=hidden.device, dtype=torch.float32)
    flat = hidden.reshape(batch * seq, width)  # [tokens, d_model]
    # Indices were range-checked when the plan was made; re-checking would sync CUDA every step.
    out = kernels.gated_redirect(flat, token_rows, vectors, alpha, check_indices=False)
    return out.view(batch, seq, width)


@contextmanager
def steered(model: torch.nn.Module, plans: dict[int, SteeringPlan]) -> Iterator[ResidualHooks]:
    """One-off steering for library users: register hooks, apply ``plans``, remove in ``finally``."""
    hooks = ResidualHooks(model)
    try:
        with hooks.steer(plans):
            yield hooks
    finally:
        hooks.remove()
