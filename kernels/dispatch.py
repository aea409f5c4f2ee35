"""Choose the fused Triton kernel or the PyTorch reference for GUARD-IT Eq. 8 (arXiv 2605.12765).

The application passes its settings in (``set_use_triton``, ``set_disabled_kernels``); this module
never reads the environment. Each fallback reason is logged once at INFO and counted. A fallback is
*expected* when it is the configuration's choice (a CPU tensor, Triton switched off, the op disabled) and
*unexpected* when a CUDA tensor reaches the reference because Triton is missing or cannot take the input.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable

import torch

from kernels.gated_redirect import gated_redirect_op, gated_redirect_triton, triton_supports
from kernels.reference import DEFAULT_EPS, gated_redirect_ref

__all__ = [
    "FallbackListener",
    "KNOWN_KERNELS",
    "disabled_kernels",
    "fallback_counts",
    "gated_redirect",
    "reset_fallback_counts",
    "set_disabled_kernels",
    "set_fallback_listener",
    "set_use_triton",
]

logger = logging.getLogger(__name__)

FallbackListener = Callable[[str, str], None]
"""Called as ``listener(op, reason)`` on a fallback, e.g. to bump a Prometheus counter."""

KNOWN_KERNELS = frozenset({"gated_redirect"})


@dataclasses.dataclass
class _Settings:
    use_triton: bool = True
    disabled: frozenset[str] = frozenset()
    listener: FallbackListener | None = None
    listener_expected: bool = True


_settings = _Settings()
_lock = threading.Lock()
_counts: dict[str, int] = {}
_logged: set[tuple[str, str]] = set()


def set_use_triton(enabled: bool) -> None:
    """Globally allow (default) or forbid the Triton path; forbidden means the reference everywhere."""
    _settings.use_triton = bool(enabled)


def set_disabled_kernels(names: Iterable[str]) -> None:
    """Send the named ops (e.g. ``{"gated_redirect"}``) to the reference; replaces the old set.

    Raises:
        ValueError: a name that is not one of ``KNOWN_KERNELS``.
    """
    disabled = frozenset(names)
    unknown = sorted(disabled - KNOWN_KERNELS)
    if unknown:
        raise ValueError(f"expected kernel names from {sorted(KNOWN_KERNELS)}, found {unknown}")
    _settings.disabled = disabled


def disabled_kernels() -> frozenset[str]:
    """The ops currently sent to the reference by ``set_disabled_kernels``."""
    return _settings.disabled


def set_fallback_listener(listener: FallbackListener | None, *, include_expected: bool = True) -> None:
    """Install (or with None remove) the callback run on fallbacks.

    Args:
        listener: called as ``listener(op, reason)``.
        include_expected: False: only unexpected fallbacks (CUDA tensors that Triton could not take),
            so a CPU deployment, which uses the reference by design, never calls it.
    """
    _settings.listener = listener
    _settings.listener_expected = include_expected


def fallback_counts() -> dict[str, int]:
    """Fallbacks per op since start (or the last ``reset_fallback_counts``); a copy."""
    with _lock:
        return dict(_counts)


def reset_fallback_counts() -> None:
    """Zero the counts and forget which fallbacks were logged, so the next ones log again."""
    with _lock:
        _counts.clear()
        _logged.clear()


def _record_fallback(op: str, reason: str, *, expected: bool) -> None:
    with _lock:
        _counts[op] = _counts.get(op, 0) + 1
        first = (op, reason) not in _logged
        _logged.add((op, reason))
    if first:
        logger.info("kernel %s falls back to the PyTorch reference: %s", op, reason)
    if _settings.listener is not None and (_settings.listener_expected or not expected):
        _settings.listener(op, reason)


def _fallback_reason(
    op: str, h: torch.Tensor, out: torch.Tensor | None, use_triton: bool | None
) -> tuple[str | None, bool]:
    """(why the reference runs, or None for the fast path; whether that is the configuration's choice)."""
    if use_triton is False or (use_triton is None and not _settings.use_triton):
        return "triton disabled (use_triton=False)", True
    if op in _settings.disabled:
        return "disabled by disabled_kernels", True
    if h.device.type != "cuda":
        return f"device {h.device.type}", True
    return triton_supports(h, out), False


def gated_redirect(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float | torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    eps: float = DEFAULT_EPS,
    check_indices: bool = True,
    use_triton: bool | None = None,
) -> torch.Tensor:
    """GUARD-IT gated norm-preserving redirection (Eq. 8) on the fastest available path.

    Per row r with index i >= 0: ``h'_r = (h_r - a_i v_i) ||h_r|| / max(||h_r - a_i v_i||, eps)``;
    rows with index -1 are copied bit for bit (skipped when ``out is h``). CUDA tensors go to the
    fused Triton kernel; everything else, and ops disabled by the application, to the reference.

    Args:
        h: ``[tokens, d_model]`` hidden states (flatten leading dims first); rows may be strided.
        row_vector: ``[tokens]`` int32/int64 index into ``vectors``, -1 for untouched rows.
        vectors: ``[n_vectors, d_model]`` steering vectors, dtype and device of ``h``.
        alpha: a float, or a ``[n_vectors]`` tensor of per-vector strengths.
        out: ``[tokens, d_model]`` destination; pass ``h`` to work in place. None: a new tensor.
        eps: lower bound on ``||h_r - a v_i||``.
        check_indices: check every index is in ``[-1, n_vectors)``. This syncs with the GPU; pass
            False on a CUDA-graph hot path (out-of-range indices then leave their row untouched).
        use_triton: per-call override of ``set_use_triton`` (None: module setting).

    Returns:
        ``[tokens, d_model]``: ``out`` when given, else a new contiguous tensor.

    Raises:
        TypeError: a dtype mismatch between ``h``, ``vectors`` and ``out``, or a bad index dtype.
        ValueError: a shape or device mismatch, or an index outside ``[-1, n_vectors)``.
    """
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"expected h to be a torch.Tensor, found {type(h).__name__}")
    reason, expected = _fallback_reason("gated_redirect", h, out, use_triton)
    if reason is not None:
        if not torch.compiler.is_compiling():
            _record_fallback("gated_redirect", reason, expected=expected)
        return gated_redirect_ref(h, row_vector, vectors, alpha, out, eps=eps, check_indices=check_indices)
    if torch.compiler.is_compiling():
        return gated_redirect_op(h, row_vector, vectors, alpha, out, eps=eps)
    return gated_redirect_triton(h, row_vector, vectors, alpha, out, eps=eps, check_indices=check_indices)
