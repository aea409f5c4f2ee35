"""The GUARD-IT gate (arXiv 2605.12765, METHOD.md steps 6-8) on hand-built forget-set artifacts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steering.errors import ConfigError, UnknownForgetSetError
from steering.gates import ActiveSet, GateMatch, GateState, build_plans
from steering.vectors import ForgetSetArtifacts

D_EMBED, D_MODEL = 8, 32


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def artifacts(
    centroids: torch.Tensor, *, seed: int, layer: int = 1, mean_norm: float = 10.0
) -> ForgetSetArtifacts:
    gen = torch.Generator().manual_seed(seed)
    k = centroids.shape[0]
    return ForgetSetArtifacts(
        centroids=unit(centroids.float()),
        psvs=torch.randn(k, D_MODEL, generator=gen) * 3,
        retain_direction=unit(torch.randn(D_MODEL, generator=gen)),
        mean_norm=mean_norm,
        layer=layer,
        labels=torch.arange(k),
        silhouette=None,
    )


def basis(*idx: int) -> torch.Tensor:
    return torch.eye(D_EMBED)[list(idx)]


def prompt_at(cos: float, axis: int = 0, other: int = 7) -> np.ndarray:
    """``[1, d_embed]`` unit embedding whose cosine with basis vector ``axis`` is ``cos`` (float32)."""
    e = np.zeros((1, D_EMBED), dtype=np.float32)
    e[0, axis] = np.float32(cos)
    e[0, other] = np.float32(np.sqrt(1.0 - np.float64(cos) ** 2))
    return e


def expected_direction(art: ForgetSetArtifacts, clusters: list[int]) -> torch.Tensor:
    """Eq. 6 by hand in float64: unit(mean PSV of the open clusters minus its retain component)."""
    v = art.psvs[clusters].double().mean(dim=0)
    r = art.retain_direction.double()
    v = v - (v @ r) * r
    return v / v.norm()


@pytest.fixture
def two_sets() -> GateState:
    # Both sets own a cluster at e0; A also at e1, B also at e2.
    a = ActiveSet("A", artifacts(basis(0, 1), seed=1, mean_norm=10.0), threshold=0.5, alpha=0.3)
    b = ActiveSet("B", artifacts(basis(0, 2), seed=2, mean_norm=20.0), threshold=0.5, alpha=0.6)
    return GateState((a, b))


def test_the_empty_gate_opens_nothing() -> None:
    state = GateState()
    assert state.empty
    assert state.match(np.ones((2, D_EMBED), dtype=np.float32)) == [[], []]
    assert state.vectors_by_layer([]) == {}


def test_similarity_exactly_at_the_threshold_opens_and_just_below_does_not() -> None:
    threshold = 0.55
    state = GateState((ActiveSet("A", artifacts(basis(0), seed=0), threshold=threshold, alpha=0.2),))
    at = prompt_at(threshold)
    assert state.similarities(at)[0, 0] == np.float32(threshold)
    below = at.copy()
    below[0, 0] = np.nextafter(np.float32(threshold), np.float32(0))
    assert [m.cluster for m in state.match(at)[0]] == [0]
    assert state.match(below) == [[]]
    [match] = state.match(at)[0]
    assert match.forget_set_id == "A" and match.similarity == pytest.approx(threshold, abs=1e-7)


def test_each_forget_set_uses_its_own_threshold() -> None:
    strict = ActiveSet("strict", artifacts(basis(0), seed=0), threshold=0.9, alpha=0.2)
    loose = ActiveSet("loose", artifacts(basis(0), seed=1), threshold=0.3, alpha=0.2)
    state = GateState((strict, loose))
    assert [m.forget_set_id for m in state.match(prompt_at(0.5))[0]] == ["loose"]
    assert [m.forget_set_id for m in state.match(prompt_at(0.95))[0]] == ["strict", "loose"]
    assert state.match(prompt_at(0.2)) == [[]]


def test_a_chat_gates_on_the_highest_similarity_of_its_rows() -> None:
    state = GateState((ActiveSet("A", artifacts(basis(0), seed=0), threshold=0.6, alpha=0.2),))
    rows = np.concatenate([prompt_at(0.1), prompt_at(0.7), prompt_at(0.3)])
    [first, second] = state.match_groups(rows, [[0, 2], [0, 1]])
    assert first == []
    assert len(second) == 1 and second[0].similarity == pytest.approx(0.7, abs=1e-6)


def test_a_prompt_matching_two_sets_opens_clusters_of_both(two_sets: GateState) -> None:
    [matches] = two_sets.match(prompt_at(1.0))
    assert {(m.forget_set_id, m.cluster) for m in matches} == {("A", 0), ("B", 0)}


def test_one_open_set_gives_alpha_times_mu_times_its_unit_direction(two_sets: GateState) -> None:
    art = two_sets.get("A").artifacts
    vectors = two_sets.vectors_by_layer([GateMatch("A", 0, 1.0), GateMatch("A", 1, 0.9)])
    assert list(vectors) == [1]
    expected = (0.3 * 10.0 * expected_direction(art, [0, 1])).float()
    torch.testing.assert_close(vectors[1], expected, rtol=2e-7, atol=0)
    assert abs(float(vectors[1] @ art.retain_direction)) < 1e-5


def test_two_open_sets_combine_as_documented(two_sets: GateState) -> None:
    [matches] = two_sets.match(prompt_at(1.0))
    vectors = two_sets.vectors_by_layer(matches)
    u_a = expected_direction(two_sets.get("A").artifacts, [0])
    u_b = expected_direction(two_sets.get("B").artifacts, [0])
    mean = (u_a + u_b) / 2
    scale = (0.3 * 10.0 + 0.6 * 20.0) / 2
    torch.testing.assert_close(vectors[1].double(), scale * mean / mean.norm(), rtol=1e-6, atol=1e-6)
    assert float(vectors[1].norm()) == pytest.approx(scale, rel=1e-6)


def test_sets_at_different_layers_each_steer_their_own_layer() -> None:
    a = ActiveSet("A", artifacts(basis(0), seed=1, layer=0), threshold=0.5, alpha=0.5)
    b = ActiveSet("B", artifacts(basis(0), seed=2, layer=2, mean_norm=4.0), threshold=0.5, alpha=0.25)
    state = GateState((a, b))
    vectors = state.vectors_by_layer(state.match(prompt_at(1.0))[0])
    assert sorted(vectors) == [0, 2]
    torch.testing.assert_close(
        vectors[0].double(), 5.0 * expected_direction(a.artifacts, [0]), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(
        vectors[2].double(), 1.0 * expected_direction(b.artifacts, [0]), rtol=1e-6, atol=0
    )


def test_revoking_a_set_leaves_only_the_other_sets_clusters(two_sets: GateState) -> None:
    after = two_sets.without("A")
    assert after.ids() == ["B"]
    assert two_sets.ids() == ["A", "B"]  # snapshots are immutable
    [matches] = after.match(prompt_at(1.0))
    assert [(m.forget_set_id, m.cluster) for m in matches] == [("B", 0)]
    u_b = expected_direction(two_sets.get("B").artifacts, [0])
    torch.testing.assert_close(after.vectors_by_layer(matches)[1].double(), 12.0 * u_b, rtol=1e-6, atol=0)
    with pytest.raises(UnknownForgetSetError):
        after.get("A")


def test_adding_a_set_with_an_existing_id_replaces_it(two_sets: GateState) -> None:
    replacement = ActiveSet("A", artifacts(basis(5), seed=9), threshold=0.5, alpha=0.3)
    state = two_sets.with_set(replacement)
    assert state.ids() == ["B", "A"]
    assert [(m.forget_set_id, m.cluster) for m in state.match(prompt_at(1.0, axis=5, other=7))[0]] == [
        ("A", 0)
    ]


def test_a_set_with_zero_alpha_opens_its_gate_but_adds_no_vector() -> None:
    state = GateState((ActiveSet("A", artifacts(basis(0), seed=0), threshold=0.5, alpha=0.0),))
    [matches] = state.match(prompt_at(1.0))
    assert len(matches) == 1
    assert state.vectors_by_layer(matches) == {}


@pytest.mark.parametrize("threshold", [1.01, -1.5, float("nan")])
def test_an_active_set_refuses_a_threshold_outside_minus_one_one(threshold: float) -> None:
    with pytest.raises(ConfigError) as info:
        ActiveSet("A", artifacts(basis(0), seed=0), threshold=threshold, alpha=0.2)
    assert info.value.field == "threshold"


@pytest.mark.parametrize("alpha", [-0.01, float("inf"), float("nan")])
def test_an_active_set_refuses_a_negative_or_non_finite_alpha(alpha: float) -> None:
    with pytest.raises(ConfigError) as info:
        ActiveSet("A", artifacts(basis(0), seed=0), threshold=0.5, alpha=alpha)
    assert info.value.field == "alpha"


def test_build_plans_shares_identical_vectors_and_leaves_other_rows_untouched() -> None:
    v, w = torch.randn(D_MODEL), torch.randn(D_MODEL)
    plans = build_plans([{1: v}, None, {1: v.clone(), 2: w}, {}], batch=4)
    assert sorted(plans) == [1, 2]
    assert plans[1].row_vector.tolist() == [0, -1, 0, -1]
    assert plans[1].row_vector.dtype == torch.int32
    assert torch.equal(plans[1].vectors, v.unsqueeze(0))
    assert plans[2].row_vector.tolist() == [-1, -1, 0, -1]
    assert torch.equal(plans[2].vectors, w.unsqueeze(0))
    assert build_plans([None, {}], batch=2) == {}
    with pytest.raises(ValueError):
        build_plans([None], batch=2)
