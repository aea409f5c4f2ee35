"""Semantic clusters of a forget set (METHOD.md step 2): k-means on unit embeddings, k by silhouette."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clustering:
    """Result of the silhouette search.

    Attributes:
        labels: ``[n_docs]`` cluster of each document.
        centroids: ``[k, d_embed]`` unit-length centroids c_j.
        k: number of clusters.
        silhouette: mean silhouette of the chosen k (None when k = 1).
        scores: silhouette per tried k.
    """

    labels: np.ndarray
    centroids: np.ndarray
    k: int
    silhouette: float | None
    scores: dict[int, float]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise each row; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = x / np.maximum(norms, 1e-12)
    return unit


def cluster_embeddings(embeddings: np.ndarray, *, k_max: int = 10, seed: int = 0) -> Clustering:
    """K-means for k in 2..min(k_max, n-1), keeping the highest mean silhouette.

    Args:
        embeddings: ``[n_docs, d_embed]`` document embeddings (normalised here).
        k_max: largest k tried.
        seed: k-means seed; the result is deterministic under it.

    Returns:
        The chosen clustering; k = 1 (the normalised mean) when n < 3 or k_max < 2.
    """
    from threadpoolctl import threadpool_limits

    x = normalize_rows(np.asarray(embeddings, dtype=np.float64))
    upper = min(k_max, x.shape[0] - 1)
    # One thread (OpenMP and BLAS, process-wide for the search's second or so): a forget set's few
    # thousand points are too small to share out, and two threads waiting on each other on a busy
    # machine made one fit of 400 points take 7 s instead of 0.25 s (same labels).
    with threadpool_limits(limits=1):
        return _search(x, upper, seed)


def _search(x: np.ndarray, upper: int, seed: int) -> Clustering:
    """The silhouette search over k in 2..upper on unit rows ``x`` ``[n_docs, d_embed]``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = x.shape[0]
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    scores: dict[int, float] = {}
    for k in range(2, upper + 1):
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
        if len(set(km.labels_.tolist())) < 2:
            continue  # duplicate documents can collapse clusters; silhouette is undefined then
        score = float(silhouette_score(x, km.labels_, metric="euclidean"))
        scores[k] = score
        if best is None or score > best[0]:
            best = (score, k, km.labels_.copy(), km.cluster_centers_.copy())
    if best is None:
        centroid = normalize_rows(x.mean(axis=0, keepdims=True))
        return Clustering(np.zeros(n, dtype=np.int64), centroid.astype(np.float32), 1, None, scores)
    score, k, labels, centers = best
    return Clustering(labels.astype(np.int64), normalize_rows(centers).astype(np.float32), k, score, scores)
