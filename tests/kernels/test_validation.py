"""Bad inputs to GUARD-IT Eq. 8 (arXiv 2605.12765) raise clear "expected X, found Y" errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kernels import gated_redirect, gated_redirect_ref
from kernels.gated_redirect import gated_redirect_op, gated_redirect_triton
from tests.kernels.inputs import DEVICE, HAS_TRITON

IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "dispatch": gated_redirect,
    "reference": gated_redirect_ref,
    "triton": gated_redirect_triton,
    "op": gated_redirect_op,
}


def _args(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = {
        "h": torch.randn(4, 8, device=DEVICE),
        "row_vector": torch.tensor([0, -1, 1, 0], dtype=torch.int32, device=DEVICE),
        "vectors": torch.randn(2, 8, device=DEVICE),
        "alpha": 0.5,
    }
    args.update(overrides)
    return args


F16 = torch.float16
BAD = {
    "h_1d": (
        ValueError,
        r"expected h of shape \[tokens, d_model\], found \[8\]",
        {"h": torch.randn(8)},
    ),
    "h_int": (
        TypeError,
        r"expected a floating-point h, found torch.int64",
        {"h": torch.ones(4, 8, dtype=torch.long)},
    ),
    "h_list": (
        TypeError,
        r"expected h to be a torch.Tensor, found list",
        {"h": [[1.0] * 8] * 4},
    ),
    "vectors_width": (
        ValueError,
        r"expected vectors of shape \[n_vectors, 8\], found \[2, 9\]",
        {"vectors": torch.randn(2, 9)},
    ),
    "vectors_dtype": (
        TypeError,
        r"expected vectors.dtype == h.dtype \(torch.float32\), found torch.float16",
        {"vectors": torch.randn(2, 8, dtype=F16)},
    ),
    "index_dtype": (
        TypeError,
        r"expected row_vector of dtype torch.int32 or torch.int64, found torch.float32",
        {"row_vector": torch.zeros(4)},
    ),
    "index_len": (
        ValueError,
        r"expected row_vector of shape \[tokens\] = \[4\], found \[3\]",
        {"row_vector": torch.zeros(3, dtype=torch.int32)},
    ),
    "range_high": (
        ValueError,
        r"expected row_vector entries < n_vectors = 2, found 2",
        {"row_vector": torch.tensor([0, 2, 1, 0], dtype=torch.int32)},
    ),
    "range_low": (
        ValueError,
        r"expected row_vector entries >= -1, found -2",
        {"row_vector": torch.tensor([0, -2, 1, 0])},
    ),
    "alpha_len": (
        ValueError,
        r"expected alpha of shape \[n_vectors\] = \[2\] \(or a scalar\), found \[3\]",
        {"alpha": torch.ones(3)},
    ),
    "alpha_int": (
        TypeError,
        r"expected a floating-point alpha tensor, found torch.int64",
        {"alpha": torch.ones(2, dtype=torch.long)},
    ),
    "alpha_str": (
        TypeError,
        r"expected alpha to be a float or a \[n_vectors\] tensor, found str",
        {"alpha": "0.5"},
    ),
    "out_shape": (
        ValueError,
        r"expected out of shape \[4, 8\], found \[4, 9\]",
        {"out": torch.empty(4, 9)},
    ),
    "out_dtype": (
        TypeError,
        r"expected out.dtype == h.dtype \(torch.float32\), found torch.float16",
        {"out": torch.empty(4, 8, dtype=F16)},
    ),
}


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_input_raises_an_expected_found_error(impl: str, bad: str) -> None:
    error, message, overrides = BAD[bad]
    if impl == "triton" and not HAS_TRITON:
        pytest.skip("triton is not installed")
    if impl == "op" and bad.startswith("range_"):
        pytest.skip("the registered op does not read index values (no host sync under torch.compile)")
    on_device = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in overrides.items()}
    args = _args(**on_device)
    with pytest.raises(error, match=message):
        IMPLS[impl](args.pop("h"), args.pop("row_vector"), args.pop("vectors"), args.pop("alpha"), **args)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_launcher_rejects_a_column_stride_other_than_one() -> None:
    h = torch.randn(8, 4, device=DEVICE).t()  # [4, 8] with stride (1, 4)
    with pytest.raises(ValueError, match=r"expected .* stride\(1\) == 1 .*, found h.stride\(1\) == 4"):
        idx = torch.zeros(4, dtype=torch.int32, device=DEVICE)
        gated_redirect_triton(h, idx, torch.randn(1, 8, device=DEVICE), 1.0)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_launcher_rejects_float64() -> None:
    h = torch.randn(4, 8, dtype=torch.float64, device=DEVICE)
    idx = torch.zeros(4, dtype=torch.int32, device=DEVICE)
    with pytest.raises(TypeError, match=r"expected float32/float16/bfloat16 .*, found dtype torch.float64"):
        gated_redirect_triton(h, idx, torch.randn(1, 8, dtype=torch.float64, device=DEVICE), 1.0)


@pytest.mark.parametrize("impl", ["dispatch", "reference"])
def test_column_strided_and_float64_inputs_still_work_on_the_reference_paths(impl: str) -> None:
    h = torch.randn(8, 4, dtype=torch.float64, device=DEVICE).t()  # [4, 8] with stride (1, 4)
    idx = torch.tensor([0, -1, 0, 0], device=DEVICE)
    vectors = torch.randn(1, 8, dtype=torch.float64, device=DEVICE)
    out = IMPLS[impl](h, idx, vectors, 0.3)
    torch.testing.assert_close(out.norm(dim=1), h.norm(dim=1))
    assert torch.equal(out[1], h[1])
