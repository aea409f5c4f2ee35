"""Dispatch between the fused Triton kernel and the reference for GUARD-IT Eq. 8 (arXiv 2605.12765)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch

import kernels
from kernels import dispatch
from tests.kernels.inputs import DEVICE, ON_CUDA, assert_bit_identical, make_case


@pytest.fixture(autouse=True)
def _fresh_dispatch_state() -> Iterator[None]:
    dispatch.reset_fallback_counts()
    yield
    dispatch.set_use_triton(True)
    dispatch.set_disabled_kernels(())
    dispatch.set_fallback_listener(None)
    dispatch.reset_fallback_counts()


def _forbid_triton(*args: object, **kwargs: object) -> torch.Tensor:
    raise AssertionError("the Triton path was taken")


def test_dispatch_on_cpu_uses_the_reference_and_logs_the_fallback_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dispatch, "gated_redirect_triton", _forbid_triton)
    seen: list[tuple[str, str]] = []
    dispatch.set_fallback_listener(lambda op, reason: seen.append((op, reason)))
    case = make_case(9, 40, torch.float32, per_vector=True)
    h = case.h.cpu()
    args = (case.row_vector.cpu(), case.vectors.cpu(), case.alpha.cpu())  # type: ignore[union-attr]

    with caplog.at_level(logging.INFO, logger="kernels.dispatch"):
        first = kernels.gated_redirect(h, *args)
        second = kernels.gated_redirect(h, *args)

    assert_bit_identical(first, kernels.gated_redirect_ref(h, *args))
    assert_bit_identical(second, first)
    records = [r for r in caplog.records if r.name == "kernels.dispatch"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "kernel gated_redirect falls back to the PyTorch reference: device cpu")
    ]
    assert dispatch.fallback_counts() == {"gated_redirect": 2}
    assert seen == [("gated_redirect", "device cpu")] * 2


REASONS = {
    "disabled_kernels": "disabled by disabled_kernels",
    "set_use_triton": "triton disabled (use_triton=False)",
    "per_call": "triton disabled (use_triton=False)",
}


@pytest.mark.parametrize("how", sorted(REASONS))
def test_the_application_can_switch_the_triton_path_off(
    how: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dispatch, "gated_redirect_triton", _forbid_triton)
    case = make_case(5, 16, torch.float32)
    use_triton = None
    if how == "disabled_kernels":
        dispatch.set_disabled_kernels({"gated_redirect"})
        assert dispatch.disabled_kernels() == frozenset({"gated_redirect"})
    elif how == "set_use_triton":
        dispatch.set_use_triton(False)
    else:
        use_triton = False

    with caplog.at_level(logging.INFO, logger="kernels.dispatch"):
        out = kernels.gated_redirect(case.h, case.row_vector, case.vectors, 0.5, use_triton=use_triton)

    assert_bit_identical(out, kernels.gated_redirect_ref(case.h, case.row_vector, case.vectors, 0.5))
    # The switches are checked before the device, so the logged reason names them even on CPU.
    assert caplog.records[-1].getMessage().endswith(REASONS[how])
    assert dispatch.fallback_counts() == {"gated_redirect": 1}


def test_unknown_kernel_names_are_rejected() -> None:
    message = r"expected kernel names from \['gated_redirect'\], found \['rms_norm'\]"
    with pytest.raises(ValueError, match=message):
        dispatch.set_disabled_kernels({"rms_norm"})


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA")
def test_dispatch_on_cuda_takes_the_triton_path_without_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "gated_redirect_ref", _forbid_triton)
    case = make_case(64, 576, torch.bfloat16, per_vector=True)
    kernels.gated_redirect(case.h, case.row_vector, case.vectors, case.alpha)
    assert dispatch.fallback_counts() == {}
    assert DEVICE.type == "cuda"
