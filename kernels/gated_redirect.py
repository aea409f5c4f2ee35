"""Fused Triton kernel for GUARD-IT gated redirection, Eq. 8 of arXiv 2605.12765.

One pass over the hidden states: each row of ``h`` is read once and ``h'`` written once; the
norms are accumulated in float32 with max-abs scaling, so huge rows cannot overflow.
"""

from __future__ import annotations

import dataclasses

import torch

from kernels._checks import check_gated_redirect_args, is_same_view, split_alpha
from kernels.reference import DEFAULT_EPS, gated_redirect_ref

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency: dispatch falls back to the reference
    triton = None

__all__ = [
    "HAS_TRITON",
    "KernelConfig",
    "gated_redirect_op",
    "gated_redirect_triton",
    "is_interpreted",
    "pick_config",
    "triton_supports",
]

HAS_TRITON = triton is not None
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

if HAS_TRITON:

    @triton.jit
    def _accumulate(mh, sh, mu, su, x, u):  # type: ignore[no-untyped-def]  # jitted: Triton types it
        # Running max |.| (m) and sum((. / m)^2) (s) per row of h and of u = h - a v, all
        # [BLOCK_M]; x, u: [BLOCK_M, BLOCK_D] fp32. Scaling by the max keeps huge rows finite.
        mh_new = tl.maximum(mh, tl.max(tl.abs(x), axis=1))
        mu_new = tl.maximum(mu, tl.max(tl.abs(u), axis=1))
        ih = 1.0 / tl.where(mh_new > 0, mh_new, 1.0)  # a zero max means an all-zero row so far
        iu = 1.0 / tl.where(mu_new > 0, mu_new, 1.0)
        xs = x * ih[:, None]
        us = u * iu[:, None]
        rh = mh * ih  # <= 1: rescales the old sum to the new max
        ru = mu * iu
        return mh_new, sh * rh * rh + tl.sum(xs * xs, axis=1), mu_new, su * ru * ru + tl.sum(us * us, axis=1)

    @triton.jit
    def _norm_ratio(mh, sh, mu, su, eps):  # type: ignore[no-untyped-def]  # jitted: Triton types it
        # ||h|| / max(||u||, eps) from the scaled sums; the eps branch only when ||u|| < eps.
        nu = mu * tl.sqrt(su)
        ok = (mh / tl.where(mu > 0, mu, 1.0)) * tl.sqrt(sh / tl.where(su > 0, su, 1.0))
        return tl.where(nu >= eps, ok, mh * tl.sqrt(sh) / eps)

    @triton.jit  # type: ignore[untyped-decorator]
    def _gated_redirect_kernel(  # type: ignore[no-untyped-def]
        h_ptr,  # [tokens, d_model]; row stride stride_h, column stride 1
        out_ptr,  # [tokens, d_model]; row stride stride_o, column stride 1 (== h_ptr in place)
        idx_ptr,  # [tokens] int32/int64: row -> vector index, -1 = untouched
        v_ptr,  # [n_vectors, d_model]; row stride stride_v, column stride 1
        alpha_ptr,  # [n_vectors] per-vector strengths (read only if HAS_ALPHA_VEC)
        alpha,  # float scalar strength (used if not HAS_ALPHA_VEC)
        tokens,
        d_model,
        n_vectors,
        stride_h,  # elements between rows of h
        stride_o,  # elements between rows of out
        stride_v,  # elements between rows of vectors
        eps,
        HAS_ALPHA_VEC: tl.constexpr,
        IN_PLACE: tl.constexpr,  # skip (neither read nor write) untouched rows
        ONE_PASS: tl.constexpr,  # BLOCK_D >= d_model: the row stays in registers
        BLOCK_M: tl.constexpr,  # rows per program
        BLOCK_D: tl.constexpr,  # columns per tile
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
        row_ok = rows < tokens
        idx = tl.load(idx_ptr + rows, mask=row_ok, other=-1)
        active = row_ok & (idx >= 0) & (idx < n_vectors)
        vrow = tl.where(active, idx, 0).to(tl.int64)
        if HAS_ALPHA_VEC:
            a = tl.load(alpha_ptr + vrow, mask=active, other=0.0).to(tl.float32)
        else:
            a = tl.zeros([BLOCK_M], dtype=tl.float32) + alpha
        live = active if IN_PLACE else row_ok  # rows this program reads and writes
        rows64 = rows.to(tl.int64)
        h_row = h_ptr + rows64[:, None] * stride_h  # [BLOCK_M, 1]
        o_row = out_ptr + rows64[:, None] * stride_o
        v_row = v_ptr + vrow[:, None] * stride_v
        cols = tl.arange(0, BLOCK_D)  # [BLOCK_D]
        zero = tl.zeros([BLOCK_M], dtype=tl.float32)
        if ONE_PASS:
            mask = live[:, None] & (cols < d_model)[None, :]
            x_raw = tl.load(h_row + cols[None, :], mask=mask, other=0.0)
            x = x_raw.to(tl.float32)
            v = tl.load(v_row + cols[None, :], mask=mask & active[:, None], other=0.0).to(tl.float32)
            u = x - a[:, None] * v  # [BLOCK_M, BLOCK_D]
            mh, sh, mu, su = _accumulate(zero, zero, zero, zero, x, u)
            ratio = _norm_ratio(mh, sh, mu, su, eps)
            res = tl.where(active[:, None], (u * ratio[:, None]).to(x_raw.dtype), x_raw)
            tl.store(o_row + cols[None, :], res.to(out_ptr.dtype.element_ty), mask=mask)
        else:
            mh, sh, mu, su = zero, zero, zero, zero
            for start in range(0, d_model, BLOCK_D):
                c = start + cols
                mask = live[:, None] & (c < d_model)[None, :]
                x = tl.load(h_row + c[None, :], mask=mask, other=0.0).to(tl.float32)
                v = tl.load(v_row + c[None, :], mask=mask & active[:, None], other=0.0).to(tl.float32)
                mh, sh, mu, su = _accumulate(mh, sh, mu, su, x, x - a[:, None] * v)
            ratio = _norm_ratio(mh, sh, mu, su, eps)
            for start in range(0, d_model, BLOCK_D):
                c = start + cols
                mask = live[:, None] & (c < d_model)[None, :]
                x_raw = tl.load(h_row + c[None, :], mask=mask, other=0.0)
                v = tl.load(v_row + c[None, :], mask=mask & active[:, None], other=0.0).to(tl.float32)
                u = x_raw.to(tl.float32) - a[:, None] * v
                res = tl.where(active[:, None], (u * ratio[:, None]).to(x_raw.dtype), x_raw)
                tl.store(o_row + c[None, :], res.to(out_ptr.dtype.element_ty), mask=mask)


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Launch shape: ``block_m`` rows x ``block_d`` columns per program (powers of two)."""

    block_m: int
    block_d: int
    num_warps: int


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def pick_config(tokens: int, d_model: int, interpreted: bool = False) -> KernelConfig:
    """Heuristic launch shape for ``[tokens, d_model]``.

    On a GPU a program holds about 4096 elements (several rows when ``d_model`` is small, so each
    program still moves enough bytes) and rows up to 8192 wide stay in registers. Under the
    interpreter every program costs Python time, so tiles are as large as numpy handles well.
    """
    block_d = _next_pow2(d_model)
    if interpreted:
        block_d = min(block_d, 1 << 16)
        block_m = max(1, min((1 << 17) // block_d, 1024))
        return KernelConfig(min(block_m, _next_pow2(max(tokens, 1))), block_d, 1)
    if block_d > 8192:
        block_d = 4096  # two passes over the row: the second reads it again (mostly from L2)
    block_m = max(1, min(4096 // block_d, 16, _next_pow2(max(tokens, 1))))
    num_warps = max(4, min(16, block_m * block_d // 256))  # ~8 elements per thread
    return KernelConfig(block_m, block_d, num_warps)


def is_interpreted() -> bool:
    """True when the kernel was decorated under ``TRITON_INTERPRET=1`` (it then runs on CPU)."""
    if not HAS_TRITON:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_gated_redirect_kernel, InterpretedFunction)


def triton_supports(h: torch.Tensor, out: torch.Tensor | None = None) -> str | None:
    """None when the Triton path can take ``h``/``out``, else why not (for logs and metrics)."""
    if not HAS_TRITON:
        return "triton is not installed"
    if h.device.type != "cuda" and not is_interpreted():
        return f"device {h.device.type}"
    if h.dtype not in _TRITON_DTYPES:
        return f"dtype {h.dtype}"
    for name, x in (("h", h), ("out", out)):
        if x is not None and x.dim() == 2 and x.shape[1] > 1 and x.stride(1) != 1:
            return f"{name}.stride(1) == {x.stride(1)}"
    return None


def _check_triton_args(h: torch.Tensor, out: torch.Tensor | None) -> None:
    reason = triton_supports(h, out)
    if reason is None:
        return
    error = ImportError if not HAS_TRITON else TypeError if reason.startswith("dtype") else ValueError
    raise error(
        "expected float32/float16/bfloat16 rows with stride(1) == 1 on CUDA (or with "
        f"TRITON_INTERPRET=1 set before import), found {reason}"
    )


def gated_redirect_triton(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float | torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    eps: float = DEFAULT_EPS,
    check_indices: bool = True,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Eq. 8 with the fused Triton kernel; same contract as ``gated_redirect_ref``.

    Args:
        h: ``[tokens, d_model]`` float32/float16/bfloat16, ``h.stride(1) == 1``.
        row_vector: ``[tokens]`` int32/int64 index into ``vectors``, -1 for untouched rows.
        vectors: ``[n_vectors, d_model]`` steering vectors (dtype of ``h``).
        alpha: a float or a ``[n_vectors]`` tensor of per-vector strengths.
        out: ``[tokens, d_model]`` destination; ``out is h`` works in place and skips -1 rows.
        eps: lower bound on ``||h_r - a v_i||``.
        check_indices: check indices are in ``[-1, n_vectors)`` (one host sync on CUDA); when
            False, out-of-range indices leave their row untouched.
        config: launch shape override (tests, tuning); default ``pick_config``.

    Returns:
        ``[tokens, d_model]``: ``out`` when given, else a new contiguous tensor.
    """
    check_gated_redirect_args(h, row_vector, vectors, alpha, out, check_indices=check_indices)
    _check_triton_args(h, out)
    tokens, d_model = h.shape
    in_place = out is not None and is_same_view(out, h)
    if out is None:
        out = torch.empty((tokens, d_model), dtype=h.dtype, device=h.device)
    if tokens == 0 or d_model == 0:
        return out
    scalar, alpha_vec = split_alpha(alpha, vectors.shape[0])
    if alpha_vec is not None:
        alpha_vec = alpha_vec.contiguous()
    vectors = vectors if vectors.stride(1) == 1 else vectors.contiguous()
    cfg = config or pick_config(tokens, d_model, interpreted=h.device.type != "cuda")
    grid = (triton.cdiv(tokens, cfg.block_m),)
    _gated_redirect_kernel[grid](
        h, out, row_vector.contiguous(), vectors, alpha_vec, scalar,
        tokens, d_model, vectors.shape[0], h.stride(0), out.stride(0), vectors.stride(0), eps,
        HAS_ALPHA_VEC=alpha_vec is not None, IN_PLACE=in_place, ONE_PASS=cfg.block_d >= d_model,
        BLOCK_M=cfg.block_m, BLOCK_D=cfg.block_d, num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def _run(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha_vec: torch.Tensor | None,
    alpha: float,
    eps: float,
    out: torch.Tensor,
) -> None:
    # The registered op works everywhere: the kernel where Triton runs, else the reference.
    a = alpha if alpha_vec is None else alpha_vec
    fn = gated_redirect_triton if triton_supports(h, out) is None else gated_redirect_ref
    fn(h, row_vector, vectors, a, out, eps=eps, check_indices=False)


@torch.library.custom_op("guardit::gated_redirect", mutates_args=())
def _op(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha_vec: torch.Tensor | None,
    alpha: float,
    eps: float,
) -> torch.Tensor:
    out = torch.empty(h.shape, dtype=h.dtype, device=h.device)
    _run(h, row_vector, vectors, alpha_vec, alpha, eps, out)
    return out


# Fake (meta) impl for torch.compile: a new contiguous tensor like h. The mutating ops below
# return None, for which torch.library provides the fake impl itself.
_op.register_fake(lambda h, *_: h.new_empty(h.shape))


@torch.library.custom_op("guardit::gated_redirect_", mutates_args=("h",))
def _op_inplace(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha_vec: torch.Tensor | None,
    alpha: float,
    eps: float,
) -> None:
    _run(h, row_vector, vectors, alpha_vec, alpha, eps, h)


@torch.library.custom_op("guardit::gated_redirect_out", mutates_args=("out",))
def _op_out(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha_vec: torch.Tensor | None,
    alpha: float,
    eps: float,
    out: torch.Tensor,
) -> None:
    _run(h, row_vector, vectors, alpha_vec, alpha, eps, out)


def gated_redirect_op(
    h: torch.Tensor,
    row_vector: torch.Tensor,
    vectors: torch.Tensor,
    alpha: float | torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Eq. 8 through the registered ``guardit::gated_redirect*`` ops (for ``torch.compile``).

    Same contract as ``gated_redirect_triton`` without the index-range check; ``out is h`` maps
    to ``guardit::gated_redirect_``, another ``out`` to ``guardit::gated_redirect_out``.
    """
    check_gated_redirect_args(h, row_vector, vectors, alpha, out, check_indices=False)
    scalar, alpha_vec = split_alpha(alpha, vectors.shape[0])
    if out is None:
        new: torch.Tensor = _op(h, row_vector, vectors, alpha_vec, scalar, eps)
        return new
    # Dynamo cannot compare data pointers: while compiling only ``out is h`` means in place.
    if out is h or (not torch.compiler.is_compiling() and is_same_view(out, h)):
        _op_inplace(out, row_vector, vectors, alpha_vec, scalar, eps)
    else:
        _op_out(h, row_vector, vectors, alpha_vec, scalar, eps, out)
    return out
