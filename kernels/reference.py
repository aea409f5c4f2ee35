"""Pure-PyTorch GUARD-IT gated redirection, Eq. 8 of arXiv 2605.12765: the spec and the CPU path.

``h'_r = (h_r - a_i v_i) * ||h_r|| / max(||h_r - a_i v_i||, eps)`` for rows with index i >= 0.
"""

from __future__ import annotations

import math

import torch

from kernels._checks import (
    check_gated_redirect_args,
    check_index_bounds,
    index_range,
    is_same_view,
    split_alpha,
)

__all__ = ["DEFAULT_EPS", "gated_redirect_ref"]

DEFAULT_EPS = 1e-6
_HALF_DTYPES = (torch.float16, torch.bfloat16)
# Below this many elements a mixed batch is cheaper to compute whole than to gather (measured on CPU).
_SMALL_MIXED = 1 << 15


def _compute_dtype(dtype: torch.dtype, upcast: bool) -> torch.dtype:
    if upcast:
        return torch.float64
    # Half inputs are computed in float32 like the Triton kernel: their sums of
    # squares overflow float16 for ordinary hidden states (d_model 4096, |h| ~ 4).
    return torch.float32 if dtype in _HALF_DTYPES else dtype


def _norm_ratio(x: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """``||x_r|| / max(||u_r||, eps)`` per row, ``[n, 1]`` in ``x.dtype``; safe for huge rows."""
    nh = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # [n, 1]
    nu = torch.linalg.vector_norm(u, dim=1, keepdim=True)  # [n, 1]
    if x.dtype != torch.float64 and not math.isfinite((nh + nu).sum().item()):
        # Sums of squares of |x| > ~1e19 overflow float32 (bfloat16 has the float32 range):
        # redo the norms in float64, where no float32 value can overflow them.
        nh = torch.linalg.vector_norm(x.double(), dim=1, keepdim=True)
        nu = torch.linalg.vector_norm(u.double(), dim=1, keepdim=True)
    ratio: torch.Tensor = (nh / nu.clamp_min(eps)).to(x.dtype)
    return ratio


def _redirect_rows(
    x: torch.Tensor,
    idx: torch.Tensor,
    vectors: torch.Tensor,
    scalar: float,
    alpha_vec: torch.Tensor | None,
    eps: float,
    cdt: torch.dtype,
) -> torch.Tensor:
    """Eq. 8 on every row of ``x`` ``[n, d_model]`` with vector ``idx`` ``[n]``; a new ``[n, d_model]``."""
    x = x.to(cdt)
    v = vectors.index_select(0, idx).to(cdt)  # [n, d_model]
    if alpha_vec is None:
        u = torch.sub(x, v, alpha=scalar)  # [n, d_model]
    else:
        a = alpha_vec.index_select(0, idx).to(cdt).unsqueeze(1)  # [n, 1]
        u = torch.addcmul(x, a, v, value=-1.0)
    return u.mul_(_norm_ratio(x, u, eps))


def gated_redirect_ref(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float | torch.Tensor,
    out: torch.Tensor | None = None,
    upcast: bool = False,
    *,
    eps: float = DEFAULT_EPS,
    check_indices: bool = True,
) -> torch.Tensor:
    """Gated norm-preserving redirection (Eq. 8), in plain PyTorch.

    Rows whose index is -1 come back bit-identical to ``h``; when ``out`` is ``h`` they are not
    touched at all. On CPU only the selected rows are computed.

    Args:
        h: ``[tokens, d_model]`` hidden states; any strides.
        row_vector: ``[tokens]`` int32/int64 index into ``vectors``, -1 for untouched rows.
        vectors: ``[n_vectors, d_model]`` steering vectors (dtype of ``h``).
        alpha: strength, a float or a ``[n_vectors]`` tensor of per-vector strengths.
        out: ``[tokens, d_model]`` destination (may be ``h`` itself), or None for a new tensor.
        upcast: compute in float64; with ``out=None`` the result is float64 (the test oracle).
            Otherwise float16/bfloat16 are computed in float32 and float32/float64 in their dtype.
        eps: lower bound on ``||h_r - a v_i||``.
        check_indices: check every index is in ``[-1, n_vectors)``; when False, out-of-range
            indices leave their row untouched.

    Returns:
        ``[tokens, d_model]``: ``out`` when given, else a new contiguous tensor.
    """
    check_gated_redirect_args(h, row_vector, vectors, alpha, out, check_indices=False)
    n_vectors, tokens = vectors.shape[0], h.shape[0]
    lo, hi = index_range(row_vector) if tokens and (check_indices or h.device.type == "cpu") else (0, -1)
    if check_indices:
        check_index_bounds(lo, hi, n_vectors)
    scalar, alpha_vec = split_alpha(alpha, n_vectors)
    cdt = _compute_dtype(h.dtype, upcast)
    odt = torch.float64 if upcast and out is None else h.dtype
    if h.device.type != "cpu":
        return _ref_masked(h, row_vector, vectors, scalar, alpha_vec, out, eps, cdt, odt)

    # CPU is the decode hot path; the index range picks all / none / some rows
    # without building a mask in the common all-gated and none-gated cases.
    if tokens and lo >= 0 and hi < n_vectors:
        res = _redirect_rows(h, row_vector.long(), vectors, scalar, alpha_vec, eps, cdt)
        return res.to(odt) if out is None else out.copy_(res)
    if hi >= 0 and h.numel() <= _SMALL_MIXED:
        bounded = hi < n_vectors
        return _ref_masked(h, row_vector, vectors, scalar, alpha_vec, out, eps, cdt, odt, bounded)
    if out is None:
        out = torch.empty(h.shape, dtype=odt, device=h.device).copy_(h)
    elif not is_same_view(out, h):
        out.copy_(h)
    if hi < 0:
        return out
    sel = ((row_vector >= 0) & (row_vector < n_vectors)).nonzero().squeeze(1)  # [n_sel] gated rows
    x = h.index_select(0, sel)  # [n_sel, d_model]
    idx = row_vector.index_select(0, sel).long()  # [n_sel]
    res = _redirect_rows(x, idx, vectors, scalar, alpha_vec, eps, cdt)
    return out.index_copy_(0, sel, res.to(out.dtype))


def _ref_masked(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    scalar: float,
    alpha_vec: torch.Tensor | None,
    out: torch.Tensor | None,
    eps: float,
    cdt: torch.dtype,
    odt: torch.dtype,
    bounded: bool = False,
) -> torch.Tensor:
    """Every row computed, then selected with ``where``: no host sync (accelerators) and fewer
    ops than gathering the gated rows (small CPU batches)."""
    active = row_vector >= 0  # [tokens]; ``bounded``: no index is >= n_vectors
    if not bounded:
        active &= row_vector < vectors.shape[0]
    if vectors.shape[0] == 0:
        res = h.to(odt, copy=True)
    else:
        idx = row_vector.clamp(0, vectors.shape[0] - 1).long()  # [tokens]
        red = _redirect_rows(h, idx, vectors, scalar, alpha_vec, eps, cdt)  # [tokens, d_model]
        res = torch.where(active.unsqueeze(1), red.to(odt), h.to(odt))
    if out is None:
        return res.contiguous()
    return out.copy_(res)
