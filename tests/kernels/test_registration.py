"""The ``guardit::gated_redirect*`` torch.library ops (GUARD-IT Eq. 8, arXiv 2605.12765)."""

from __future__ import annotations

import pytest
import torch

from kernels import gated_redirect_ref
from kernels.gated_redirect import gated_redirect_op
from tests.kernels.inputs import DEVICE, assert_bit_identical, make_case

OPS = {
    "functional": torch.ops.guardit.gated_redirect.default,
    "in_place": torch.ops.guardit.gated_redirect_.default,
    "out": torch.ops.guardit.gated_redirect_out.default,
}


@pytest.mark.parametrize("per_vector", [False, True])
@pytest.mark.parametrize("variant", sorted(OPS))
def test_registered_ops_pass_opcheck(variant: str, per_vector: bool) -> None:
    case = make_case(7, 40, torch.float32, per_vector=per_vector)
    alpha_vec = case.alpha if per_vector else None
    scalar = 0.0 if per_vector else case.alpha
    args: tuple[object, ...] = (case.h.clone(), case.row_vector, case.vectors, alpha_vec, scalar, 1e-6)
    if variant == "out":
        args = (*args, torch.empty_like(case.h))
    torch.library.opcheck(OPS[variant], args)


@pytest.mark.parametrize("mode", ["new", "in_place", "out"])
def test_ops_compile_into_one_graph_and_match_the_reference(mode: str) -> None:
    case = make_case(9, 48, torch.float16, per_vector=True)

    def steer(h: torch.Tensor, idx: torch.Tensor, vectors: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        h = h * 1.0  # a producer op in the same graph
        if mode == "new":
            return gated_redirect_op(h, idx, vectors, alpha)
        out = h if mode == "in_place" else torch.empty_like(h)
        gated_redirect_op(h, idx, vectors, alpha, out=out)
        return out

    compiled = torch.compile(steer, backend="aot_eager", fullgraph=True)
    got = compiled(case.h, case.row_vector, case.vectors, case.alpha)
    assert_bit_identical(got, steer(case.h, case.row_vector, case.vectors, case.alpha))
    torch.testing.assert_close(got, gated_redirect_ref(case.h, case.row_vector, case.vectors, case.alpha))
    assert got.device.type == DEVICE.type
