"""Input validation shared by the reference and Triton paths of GUARD-IT Eq. 8 (arXiv 2605.12765).

Every message reads "expected X, found Y"; shape problems raise ValueError, type problems TypeError.
"""

from __future__ import annotations

import torch

__all__ = ["check_gated_redirect_args", "check_index_bounds", "index_range", "is_same_view", "split_alpha"]

_INDEX_DTYPES = (torch.int32, torch.int64)


def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, found {type(x).__name__}")
    return x


def _check_alpha(alpha: object, n_vectors: int, device: torch.device) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (float, int, torch.Tensor)):
        raise TypeError(f"expected alpha to be a float or a [n_vectors] tensor, found {type(alpha).__name__}")
    if not isinstance(alpha, torch.Tensor):
        return
    if not alpha.is_floating_point():
        raise TypeError(f"expected a floating-point alpha tensor, found {alpha.dtype}")
    if alpha.dim() != 0 and tuple(alpha.shape) != (n_vectors,):
        raise ValueError(
            f"expected alpha of shape [n_vectors] = [{n_vectors}] (or a scalar), found {list(alpha.shape)}"
        )
    if alpha.device != device:
        raise ValueError(f"expected alpha on {device}, found {alpha.device}")


def index_range(row_vector: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty ``[tokens]`` index tensor; one host sync on an accelerator."""
    lo, hi = torch.aminmax(row_vector)
    return int(lo), int(hi)


def check_index_bounds(lo: int, hi: int, n_vectors: int) -> None:
    """Raise ValueError unless ``-1 <= lo`` and ``hi < n_vectors``."""
    if lo < -1:
        raise ValueError(f"expected row_vector entries >= -1, found {lo}")
    if hi >= n_vectors:
        raise ValueError(f"expected row_vector entries < n_vectors = {n_vectors}, found {hi}")


def check_gated_redirect_args(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float | torch.Tensor,
    out: torch.Tensor | None,
    *,
    check_indices: bool = True,
) -> None:
    """Validate the arguments of ``gated_redirect``.

    Args:
        h: ``[tokens, d_model]`` hidden states (floating point).
        row_vector: ``[tokens]`` int32/int64 index into ``vectors``, -1 for untouched rows.
        vectors: ``[n_vectors, d_model]`` steering vectors, same dtype and device as ``h``.
        alpha: float, or ``[n_vectors]`` (or 0-dim) floating tensor of strengths.
        out: ``[tokens, d_model]`` output with the dtype and device of ``h``, or None.
        check_indices: also check every index lies in ``[-1, n_vectors)`` (syncs on CUDA).

    Raises:
        TypeError: a non-tensor argument or a dtype mismatch.
        ValueError: a shape, device or index-range mismatch.
    """
    h = _check_tensor("h", h)
    row_vector = _check_tensor("row_vector", row_vector)
    vectors = _check_tensor("vectors", vectors)
    if h.dim() != 2:
        raise ValueError(f"expected h of shape [tokens, d_model], found {list(h.shape)}")
    if not h.is_floating_point():
        raise TypeError(f"expected a floating-point h, found {h.dtype}")
    tokens, d_model = h.shape
    if vectors.dim() != 2 or vectors.shape[1] != d_model:
        raise ValueError(f"expected vectors of shape [n_vectors, {d_model}], found {list(vectors.shape)}")
    if vectors.dtype != h.dtype:
        raise TypeError(f"expected vectors.dtype == h.dtype ({h.dtype}), found {vectors.dtype}")
    if row_vector.dtype not in _INDEX_DTYPES:
        raise TypeError(f"expected row_vector of dtype torch.int32 or torch.int64, found {row_vector.dtype}")
    if tuple(row_vector.shape) != (tokens,):
        found = list(row_vector.shape)
        raise ValueError(f"expected row_vector of shape [tokens] = [{tokens}], found {found}")
    for name, x in (("vectors", vectors), ("row_vector", row_vector)):
        if x.device != h.device:
            raise ValueError(f"expected {name} on {h.device} (the device of h), found {x.device}")
    _check_alpha(alpha, vectors.shape[0], h.device)
    if out is not None:
        out = _check_tensor("out", out)
        if out.shape != h.shape:
            raise ValueError(f"expected out of shape {list(h.shape)}, found {list(out.shape)}")
        if out.dtype != h.dtype:
            raise TypeError(f"expected out.dtype == h.dtype ({h.dtype}), found {out.dtype}")
        if out.device != h.device:
            raise ValueError(f"expected out on {h.device}, found {out.device}")
    if check_indices and tokens > 0:
        # A host sync on CUDA; a CUDA-graph hot path passes check_indices=False
        # (the kernel then treats out-of-range indices as untouched rows).
        check_index_bounds(*index_range(row_vector), vectors.shape[0])


def split_alpha(alpha: float | torch.Tensor, n_vectors: int) -> tuple[float, torch.Tensor | None]:
    """Return ``(scalar, per_vector)``: a float with None, or 0.0 with a ``[n_vectors]`` tensor.

    A 0-dim tensor is expanded on its device rather than read with ``.item()``, so no host sync.
    """
    if isinstance(alpha, torch.Tensor):
        return 0.0, alpha.expand(n_vectors) if alpha.dim() == 0 else alpha
    return float(alpha), None


def is_same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` are the same tensor or views of exactly the same elements."""
    return a is b or (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
        and a.device == b.device
    )
