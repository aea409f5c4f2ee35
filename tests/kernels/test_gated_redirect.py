"""The fused Triton kernel for GUARD-IT Eq. 8 (arXiv 2605.12765) against the float64 reference.

On CPU the real kernel runs under TRITON_INTERPRET=1; on CUDA natively with the full grid.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kernels import gated_redirect_ref
from kernels.gated_redirect import KernelConfig, gated_redirect_triton
from tests.kernels.inputs import (
    DEVICE,
    N_VECTORS,
    ON_CUDA,
    Case,
    assert_bit_identical,
    assert_within_bound,
    make_case,
    needs_triton,
    rows,
)

pytestmark = needs_triton

NUM_TOKENS = [1, 7, 83, 1024]
D_MODEL = [8, 576, 769, 4096]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "strided"]
ALPHAS = ["scalar", "per_vector"]
OUTPUTS = ["new", "poisoned_out", "in_place"]

# The interpreter costs ~10 ms per small launch and ~1 s per 1024 x 4096 one, so
# on CPU shapes above SMALL_ELEMENTS run one variant each (cycled so every variant meets a large
# shape) while small shapes run them all; CUDA runs the full cartesian grid.
SMALL_ELEMENTS = 83 * 769
VARIANTS = list(itertools.product(LAYOUTS, ALPHAS, OUTPUTS))
_LARGE = [(t, d, dt) for dt in DTYPES for t in NUM_TOKENS for d in D_MODEL if t * d > SMALL_ELEMENTS]
_LARGE_VARIANT = {shape: VARIANTS[i % len(VARIANTS)] for i, shape in enumerate(_LARGE)}


def _in_interpreter_subset(shape: tuple[int, int, torch.dtype], variant: tuple[str, str, str]) -> bool:
    return shape not in _LARGE_VARIANT or _LARGE_VARIANT[shape] == variant


def _run_kernel(case: Case, output: str, strided: bool) -> torch.Tensor:
    """Launch the kernel as ``output`` says; poisoned outputs make unwritten rows fail."""
    if output == "new":
        return gated_redirect_triton(case.h, case.row_vector, case.vectors, case.alpha)
    if output == "in_place":
        res = gated_redirect_triton(case.h, case.row_vector, case.vectors, case.alpha, out=case.h)
        assert res is case.h
        return res
    num_tokens, d_model = case.h.shape
    out = rows(num_tokens, d_model, case.h.dtype, strided, fill=math.nan)
    assert gated_redirect_triton(case.h, case.row_vector, case.vectors, case.alpha, out=out) is out
    return out


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("alpha_kind", ALPHAS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("d_model", D_MODEL)
@pytest.mark.parametrize("num_tokens", NUM_TOKENS)
def test_kernel_stays_within_twice_the_pytorch_error_of_the_float64_reference(
    num_tokens: int, d_model: int, dtype: torch.dtype, layout: str, alpha_kind: str, output: str
) -> None:
    if not ON_CUDA and not _in_interpreter_subset((num_tokens, d_model, dtype), (layout, alpha_kind, output)):
        pytest.skip("large shape: one variant per shape under the interpreter, full grid on CUDA")
    strided = layout == "strided"
    case = make_case(num_tokens, d_model, dtype, strided, per_vector=alpha_kind == "per_vector")
    assert (case.h.stride(0) == d_model) != strided
    # References first: the in-place run overwrites h.
    oracle = gated_redirect_ref(case.h, case.row_vector, case.vectors, case.alpha, upcast=True)
    same_dtype = gated_redirect_ref(case.h, case.row_vector, case.vectors, case.alpha)
    before = case.h.clone()

    out = _run_kernel(case, output, strided)

    untouched = case.row_vector < 0
    assert_bit_identical(out[untouched], before[untouched])
    assert_within_bound(out, oracle, same_dtype)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("num_tokens", "d_model", "block_d"), [(7, 769, 256), (83, 4096, 1024), (5, 100, 32)]
)
def test_two_pass_path_for_rows_wider_than_one_tile_matches_the_reference(
    num_tokens: int, d_model: int, block_d: int, dtype: torch.dtype, in_place: bool
) -> None:
    case = make_case(num_tokens, d_model, dtype, strided=True, per_vector=True)
    oracle = gated_redirect_ref(case.h, case.row_vector, case.vectors, case.alpha, upcast=True)
    same_dtype = gated_redirect_ref(case.h, case.row_vector, case.vectors, case.alpha)
    before = case.h.clone()
    out = None if in_place else torch.full(case.h.shape, math.nan, dtype=dtype, device=DEVICE)
    config = KernelConfig(block_m=32, block_d=block_d, num_warps=4)

    res = gated_redirect_triton(
        case.h, case.row_vector, case.vectors, case.alpha, out=case.h if in_place else out, config=config
    )

    untouched = case.row_vector < 0
    assert_bit_identical(res[untouched], before[untouched])
    assert_within_bound(res, oracle, same_dtype)


def test_zero_tokens_give_an_empty_result() -> None:
    case = make_case(0, 16, torch.float32)
    assert gated_redirect_triton(case.h, case.row_vector, case.vectors, 0.5).shape == (0, 16)


def test_all_rows_untouched_with_no_vectors_copies_the_input() -> None:
    h = rows(5, 24, torch.bfloat16, strided=True)
    no_vectors = torch.empty(0, 24, dtype=torch.bfloat16, device=DEVICE)
    idx = torch.full((5,), -1, dtype=torch.int32, device=DEVICE)
    assert_bit_identical(gated_redirect_triton(h, idx, no_vectors, 0.5), h)


def test_zero_dim_alpha_tensor_acts_like_the_scalar() -> None:
    case = make_case(9, 40, torch.float32)
    scalar = gated_redirect_triton(case.h, case.row_vector, case.vectors, 0.25)
    tensor = gated_redirect_triton(case.h, case.row_vector, case.vectors, torch.tensor(0.25, device=DEVICE))
    assert_bit_identical(scalar, tensor)


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_out_of_range_indices_leave_rows_untouched_when_checks_are_off(impl: str) -> None:
    case = make_case(6, 32, torch.float16)
    idx = torch.tensor([0, N_VECTORS, -5, 1, 99, -1], dtype=torch.int32, device=DEVICE)
    fn = gated_redirect_triton if impl == "triton" else gated_redirect_ref
    out = fn(case.h, idx, case.vectors, 0.5, check_indices=False)
    untouched = torch.tensor([False, True, True, False, True, True], device=DEVICE)
    assert_bit_identical(out[untouched], case.h[untouched])
    assert not torch.equal(out[~untouched], case.h[~untouched])
