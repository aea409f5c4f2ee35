"""Eq. 6-8 of GUARD-IT (arXiv 2605.12765) against their defining properties and a float64 reference."""

from __future__ import annotations

import pytest
import torch

from steering.hooks import SteeringPlan, apply_plan
from steering.redirect import combine, redirect, remove_retain_component, rescale, set_direction


def eq8_float64(h: torch.Tensor, v: torch.Tensor, alpha: float) -> torch.Tensor:
    """h' = (h - a v) * ||h|| / ||h - a v||, written independently in float64."""
    h64, v64 = h.double(), v.double()
    u = h64 - alpha * v64
    return u * h64.norm(dim=-1, keepdim=True) / u.norm(dim=-1, keepdim=True)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_redirect_preserves_every_row_norm_and_matches_float64_eq8(alpha: float) -> None:
    h = torch.randn(2, 5, 48) * 4  # [batch, seq, d_model]
    v = torch.randn(48) * 4
    out = redirect(h, v, alpha)
    assert out.shape == h.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), h.norm(dim=-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(out.double(), eq8_float64(h, v, alpha), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, h, atol=1e-3)


def test_redirect_with_zero_alpha_returns_the_hidden_states() -> None:
    h = torch.randn(7, 32)
    torch.testing.assert_close(redirect(h, torch.randn(32), 0.0), h, rtol=1e-6, atol=1e-6)


def test_redirect_stays_finite_when_the_hidden_state_equals_the_subtracted_vector() -> None:
    v = torch.randn(16)
    h = torch.stack([v * 2.0, torch.randn(16)])  # row 0: h - 2 v = 0 exactly
    out = redirect(h, v, 2.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1].double(), eq8_float64(h[1:], v, 2.0)[0], rtol=1e-6, atol=1e-6)


def test_apply_plan_steers_rows_by_index_and_copies_untouched_rows_bit_for_bit() -> None:
    hidden = torch.randn(3, 4, 32) * 3  # [batch, seq, d_model]
    vectors = torch.randn(2, 32) * 3  # [n_vectors, d_model]
    plan = SteeringPlan(torch.tensor([1, -1, 0], dtype=torch.int32), vectors, 0.7)
    out = apply_plan(hidden, plan)
    assert torch.equal(out[1], hidden[1])
    torch.testing.assert_close(out.norm(dim=-1), hidden.norm(dim=-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(out[0].double(), eq8_float64(hidden[0], vectors[1], 0.7), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[2].double(), eq8_float64(hidden[2], vectors[0], 0.7), rtol=1e-6, atol=1e-6)


def test_apply_plan_uses_the_per_vector_alpha_of_each_row() -> None:
    hidden = torch.randn(2, 3, 16)
    vectors = torch.randn(2, 16)
    plan = SteeringPlan(torch.tensor([0, 1], dtype=torch.int32), vectors, torch.tensor([0.5, 2.0]))
    out = apply_plan(hidden, plan)
    torch.testing.assert_close(out[0].double(), eq8_float64(hidden[0], vectors[0], 0.5), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[1].double(), eq8_float64(hidden[1], vectors[1], 2.0), rtol=1e-6, atol=1e-6)


def test_retain_projection_leaves_a_direction_orthogonal_to_the_retain_direction() -> None:
    r = _unit(torch.randn(64, dtype=torch.float64))
    v = torch.randn(64, dtype=torch.float64) + 5 * r  # strongly aligned with r before Eq. 6
    projected = remove_retain_component(v, r)
    assert abs(float(torch.dot(projected, r))) < 1e-12
    # The part of v orthogonal to r is untouched.
    torch.testing.assert_close(projected, v - torch.dot(v, r) * r)


def test_set_direction_is_the_unit_mean_of_the_open_psvs_orthogonal_to_retain() -> None:
    psvs = torch.randn(4, 32)  # [k, d_model]
    r = _unit(torch.randn(32))
    direction = set_direction(psvs, [0, 2], r)
    assert abs(float(direction.norm()) - 1.0) < 1e-12
    # r is stored in float32, so it is unit only to float32 precision.
    assert abs(float(torch.dot(direction, r.double()))) < 1e-6
    mean = psvs[[0, 2]].double().mean(dim=0)
    expected = mean - torch.dot(mean, r.double()) * r.double()
    torch.testing.assert_close(direction, expected / expected.norm())


def test_rescale_gives_the_mean_norm_and_keeps_the_direction() -> None:
    v = torch.randn(32, dtype=torch.float64)
    out = rescale(v, 12.5)
    assert abs(float(out.norm()) - 12.5) < 1e-9
    assert float(torch.dot(out, v)) > 0
    torch.testing.assert_close(out / out.norm(), v / v.norm())


def test_combine_of_one_set_is_alpha_times_mu_times_its_unit_direction() -> None:
    u = _unit(torch.randn(32, dtype=torch.float64))
    out = combine([u], [0.3 * 40.0])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (u * 12.0).float(), rtol=2e-7, atol=0)


def test_combine_averages_unit_directions_and_scales() -> None:
    a, b = _unit(torch.randn(32, dtype=torch.float64)), _unit(torch.randn(32, dtype=torch.float64))
    out = combine([a, b], [2.0, 6.0])
    mean = (a + b) / 2
    torch.testing.assert_close(out.double(), 4.0 * mean / mean.norm(), rtol=1e-6, atol=1e-7)
    assert abs(float(out.norm()) - 4.0) < 1e-5
