"""Defining properties of GUARD-IT Eq. 8 (arXiv 2605.12765) for the kernel and the reference.

Eq. 8 keeps each redirected row's norm, points it along h - a v, and leaves ungated rows alone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kernels import gated_redirect, gated_redirect_ref
from kernels.gated_redirect import KernelConfig, gated_redirect_triton
from tests.kernels.inputs import DEVICE, HAS_TRITON, assert_bit_identical, make_case, rows
from tests.kernels.tolerances import RTOL

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
Impl = Callable[..., torch.Tensor]
IMPLS: dict[str, Impl] = {
    "triton": gated_redirect_triton,
    "reference": gated_redirect_ref,
    "dispatch": gated_redirect,
}


def _two_pass(*args: object, **kwargs: object) -> torch.Tensor:
    return gated_redirect_triton(*args, config=KernelConfig(32, 64, 4), **kwargs)  # type: ignore[arg-type]


IMPLS["triton_two_pass"] = _two_pass


def _impl(name: str) -> Impl:
    if name.startswith("triton") and not HAS_TRITON:
        pytest.skip("triton is not installed")
    return IMPLS[name]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_redirected_rows_keep_their_norm_and_point_along_h_minus_alpha_v(
    impl: str, dtype: torch.dtype
) -> None:
    case = make_case(64, 96, dtype, per_vector=True)
    out = _impl(impl)(case.h, case.row_vector, case.vectors, case.alpha).double()
    active = case.row_vector >= 0
    h = case.h.double()[active]
    alpha = case.alpha[case.row_vector[active].long()].double().unsqueeze(1)  # type: ignore[index]
    u = h - alpha * case.vectors.double()[case.row_vector[active].long()]
    torch.testing.assert_close(out[active].norm(dim=1), h.norm(dim=1), rtol=RTOL[dtype], atol=0)
    cosine = torch.nn.functional.cosine_similarity(out[active], u, dim=1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=0, atol=RTOL[dtype])


# Two sizes: on CPU the reference computes small mixed batches whole and gathers large ones.
SHAPES = [(33, 80), (70, 520)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_rows_with_index_minus_one_are_bit_identical_to_the_input(
    impl: str, dtype: torch.dtype, in_place: bool, shape: tuple[int, int]
) -> None:
    case = make_case(*shape, dtype, strided=True)
    case.h[1] = -0.0  # signed zeros must survive too
    before = case.h.clone()
    out = _impl(impl)(case.h, case.row_vector, case.vectors, 0.9, out=case.h if in_place else None)
    untouched = case.row_vector < 0
    assert untouched.any() and (~untouched).any()
    assert_bit_identical(out[untouched], before[untouched])
    assert (out is case.h) == in_place


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_zero_norm_rows_and_rows_equal_to_alpha_v_give_zeros(impl: str, dtype: torch.dtype) -> None:
    vectors = rows(2, 64, dtype, strided=False)
    h = torch.zeros(3, 64, dtype=dtype, device=DEVICE)
    h[1] = vectors[1] * 0.5  # u = h - a v = 0 exactly: the eps branch
    idx = torch.tensor([0, 1, -1], dtype=torch.int32, device=DEVICE)
    out = _impl(impl)(h, idx, vectors, 0.5)
    assert torch.isfinite(out).all()
    assert_bit_identical(out.abs(), torch.zeros_like(out))


HUGE = {torch.float32: 1e30, torch.float16: 3e4, torch.bfloat16: 1e30}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_huge_norm_rows_stay_finite_and_keep_their_norm(impl: str, dtype: torch.dtype) -> None:
    # float32 sums of squares overflow past ~1.8e19 per element; float16 past 65504 in fp16.
    scale = HUGE[dtype]
    h = (torch.rand(4, 4096, device=DEVICE) + 1).mul(scale / 2).to(dtype)  # [4, 4096]
    vectors = (torch.randn(2, 4096, device=DEVICE) * (scale / 8)).to(dtype)
    idx = torch.tensor([0, 1, 0, -1], dtype=torch.int64, device=DEVICE)
    out = _impl(impl)(h, idx, vectors, 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double().norm(dim=1), h.double().norm(dim=1), rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("impl", ["triton", "triton_two_pass"])
def test_kernel_keeps_the_norm_of_tiny_rows_that_underflow_a_plain_sum_of_squares(impl: str) -> None:
    h = torch.full((2, 128), 1e-25, device=DEVICE)
    vectors = torch.full((1, 128), 1e-26, device=DEVICE)
    idx = torch.zeros(2, dtype=torch.int32, device=DEVICE)
    out = _impl(impl)(h, idx, vectors, 1.0, eps=1e-35)  # ||u|| ~ 1e-24 must not hit the eps floor
    torch.testing.assert_close(out.double().norm(dim=1), h.double().norm(dim=1), rtol=1e-5, atol=0)
