"""Shared inputs and assertions for the GUARD-IT Eq. 8 kernel tests (arXiv 2605.12765)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.gated_redirect import HAS_TRITON
from tests.kernels.tolerances import ATOL

#: Tests of the Triton path itself (interpreted on CPU) need triton installed.
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

ON_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
N_VECTORS = 3
ROW_PAD = 13  # extra elements per row in the strided layout: stride(0) = d_model + ROW_PAD
ALPHA_SCALAR = 0.7
ALPHA_PER_VECTOR = (0.2, 0.6, 1.3)


@dataclasses.dataclass(frozen=True)
class Case:
    h: torch.Tensor  # [tokens, d_model]
    row_vector: torch.Tensor  # [tokens] int32 or int64
    vectors: torch.Tensor  # [n_vectors, d_model]
    alpha: float | torch.Tensor  # float or [n_vectors]


def rows(
    num_tokens: int, d_model: int, dtype: torch.dtype, strided: bool, fill: float | None = None
) -> torch.Tensor:
    """``[num_tokens, d_model]`` random (or ``fill``-ed) rows, optionally with a padded row stride."""
    width = d_model + (ROW_PAD if strided else 0)
    if fill is None:
        base = torch.randn(num_tokens, width, device=DEVICE).to(dtype)
    else:
        base = torch.full((num_tokens, width), fill, dtype=dtype, device=DEVICE)
    return base[:, :d_model]


def make_case(
    num_tokens: int, d_model: int, dtype: torch.dtype, strided: bool = False, per_vector: bool = False
) -> Case:
    """A mix of untouched rows (-1) and every vector; the first row is always redirected."""
    h = rows(num_tokens, d_model, dtype, strided)
    vectors = torch.randn(N_VECTORS, d_model, device=DEVICE).to(dtype)
    index_dtype = torch.int64 if strided else torch.int32  # both index dtypes across the grid
    row_vector = torch.randint(-1, N_VECTORS, (num_tokens,), device=DEVICE)
    head = torch.arange(N_VECTORS - 1, -2, -1, device=DEVICE)[:num_tokens]  # 2, 1, 0, -1
    row_vector[: head.numel()] = head
    alpha: float | torch.Tensor = ALPHA_SCALAR
    if per_vector:
        alpha = torch.tensor(ALPHA_PER_VECTOR, device=DEVICE)
    return Case(h, row_vector.to(index_dtype), vectors, alpha)


def assert_bit_identical(a: torch.Tensor, b: torch.Tensor) -> None:
    """Same bits, not just equal values (``-0.0`` vs ``0.0`` and NaN payloads count)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def assert_within_bound(out: torch.Tensor, oracle: torch.Tensor, same_dtype: torch.Tensor) -> None:
    """Kernel error <= 2 x same-dtype PyTorch error + atol, both against the float64 oracle."""
    assert torch.isfinite(out).all(), "non-finite output (unwritten poisoned rows?)"
    err = (out.double() - oracle).abs().max().item()
    pt_err = (same_dtype.double() - oracle).abs().max().item()
    bound = 2 * pt_err + ATOL[out.dtype]
    assert err <= bound, f"max error {err:.3g} > bound {bound:.3g} (PyTorch same-dtype error {pt_err:.3g})"
