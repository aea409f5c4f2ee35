"""Semantic clusters of a forget set (arXiv 2605.12765, METHOD.md step 2): k-means, k by silhouette."""

from __future__ import annotations

import numpy as np
import pytest

from steering.clustering import cluster_embeddings, normalize_rows


def blobs(n_blobs: int, per_blob: int, dim: int = 16, spread: float = 0.05, seed: int = 1) -> np.ndarray:
    """``[n_blobs * per_blob, dim]`` points around mutually orthogonal unit centres."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_blobs]
    points = [c + spread * rng.standard_normal((per_blob, dim)) for c in centres]
    return np.concatenate(points)


@pytest.mark.parametrize("n_blobs", [2, 3, 4])
def test_silhouette_picks_the_number_of_well_separated_blobs(n_blobs: int) -> None:
    x = blobs(n_blobs, per_blob=8)
    result = cluster_embeddings(x, k_max=6, seed=0)
    assert result.k == n_blobs
    assert result.centroids.shape == (n_blobs, 16)
    assert sorted(result.scores) == [2, 3, 4, 5, 6]
    assert result.silhouette == max(result.scores.values())
    # Every blob is one cluster: the 8 points of a blob share a label, blobs do not.
    per_blob = result.labels.reshape(n_blobs, 8)
    assert (per_blob == per_blob[:, :1]).all()
    assert len(set(per_blob[:, 0].tolist())) == n_blobs


def test_clustering_is_deterministic_under_a_seed() -> None:
    x = np.random.default_rng(3).standard_normal((30, 24))  # no clear structure: seed matters most
    first = cluster_embeddings(x, k_max=8, seed=7)
    second = cluster_embeddings(x, k_max=8, seed=7)
    assert first.k == second.k
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.scores == second.scores


def test_centroids_have_unit_length_and_point_at_their_blob() -> None:
    x = blobs(3, per_blob=6, spread=0.1) * 5.0  # unnormalised input
    result = cluster_embeddings(x, k_max=5, seed=0)
    assert result.centroids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-6)
    # Centroid j is close to the (unit) centre of the blob whose points carry label j.
    for j in range(result.k):
        members = normalize_rows(x)[result.labels == j]
        assert float(result.centroids[j] @ normalize_rows(members.mean(axis=0, keepdims=True))[0]) > 0.999


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_documents_give_one_cluster_at_the_normalised_mean(n: int) -> None:
    x = np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])[:n]
    result = cluster_embeddings(x, k_max=10, seed=0)
    assert result.k == 1
    assert result.silhouette is None
    np.testing.assert_array_equal(result.labels, np.zeros(n, dtype=np.int64))
    expected = normalize_rows(normalize_rows(x).mean(axis=0, keepdims=True))
    np.testing.assert_allclose(result.centroids, expected, atol=1e-7)


def test_k_max_of_one_gives_one_cluster() -> None:
    result = cluster_embeddings(blobs(3, per_blob=4), k_max=1, seed=0)
    assert result.k == 1 and result.scores == {}


def test_identical_documents_collapse_to_one_cluster_instead_of_failing() -> None:
    x = np.tile(np.array([[0.6, 0.8, 0.0]]), (5, 1))
    with pytest.warns(Warning):  # sklearn: fewer distinct clusters than n_clusters
        result = cluster_embeddings(x, k_max=4, seed=0)
    assert result.k == 1
    np.testing.assert_allclose(result.centroids[0], [0.6, 0.8, 0.0], atol=1e-6)
