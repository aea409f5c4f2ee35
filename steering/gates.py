"""The GUARD-IT gate and per-request directions (arXiv 2605.12765, METHOD.md steps 6-7).

A ``GateState`` is an immutable snapshot of every active forget set. Swapping the snapshot is a
single reference assignment, so a request sees a forget set entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from steering.config import check_alpha, check_threshold
from steering.errors import UnknownForgetSetError
from steering.hooks import SteeringPlan
from steering.redirect import combine, set_direction
from steering.vectors import ForgetSetArtifacts


@dataclass(frozen=True)
class GateMatch:
    """One open cluster: ``cos(c_j, e) >= T`` of its forget set."""

    forget_set_id: str
    cluster: int
    similarity: float


@dataclass(frozen=True)
class ActiveSet:
    """A forget set as the online part uses it."""

    forget_set_id: str
    artifacts: ForgetSetArtifacts
    threshold: float
    alpha: float

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        check_alpha(self.alpha)


@dataclass(frozen=True)
class GateState:
    """Immutable snapshot of the active forget sets, with their centroids stacked for one matmul."""

    sets: tuple[ActiveSet, ...] = ()
    _centroids: np.ndarray = field(init=False, repr=False)  # [total_clusters, d_embed]
    _owner: np.ndarray = field(init=False, repr=False)  # [total_clusters] index into sets
    _cluster: np.ndarray = field(init=False, repr=False)  # [total_clusters] cluster within its set
    _thresholds: np.ndarray = field(init=False, repr=False)  # [total_clusters]

    def __post_init__(self) -> None:
        parts = [s.artifacts.centroids.numpy().astype(np.float32) for s in self.sets]
        width = parts[0].shape[1] if parts else 0
        object.__setattr__(self, "_centroids", np.concatenate(parts) if parts else np.zeros((0, width), np.float32))
        object.__setattr__(self, "_owner", np.concatenate(
            [np.full(p.shape[0], i) for i, p in enumerate(parts)]) if parts else np.zeros(0, np.int64))
        object.__setattr__(self, "_cluster", np.concatenate(
            [np.arange(p.shape[0]) for p in parts]) if parts else np.zeros(0, np.int64))
        object.__setattr__(self, "_thresholds", np.concatenate(
            [np.full(p.shape[0], s.threshold, np.float32) for s, p in zip(self.sets, parts, strict=True)])
            if parts else np.zeros(0, np.float32))

    @property
    def empty(self) -> bool:
        """True when no forget set is active (every gate closed)."""
        return not self.sets

    def ids(self) -> list[str]:
        """Ids of the active sets."""
        return [s.forget_set_id for s in self.sets]

    def get(self, forget_set_id: str) -> ActiveSet:
        """The active set with this id."""
        for s in self.sets:
            if s.forget_set_id == forget_set_id:
                return s
        raise UnknownForgetSetError(f"expected an active forget set id, found {forget_set_id!r}")

    def with_set(self, active: ActiveSet) -> GateState:
        """A new snapshot with ``active`` added (or replacing the set of the same id)."""
        rest = tuple(s for s in self.sets if s.forget_set_id != active.forget_set_id)
        return GateState(rest + (active,))

    def without(self, forget_set_id: str) -> GateState:
        """A new snapshot without that set (revocation)."""
        return GateState(tuple(s for s in self.sets if s.forget_set_id != forget_set_id))

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """``[n_prompts, total_clusters]`` cosine similarities of unit prompt embeddings to centroids."""
        return np.asarray(embeddings, dtype=np.float32) @ self._centroids.T

    def match(self, embeddings: np.ndarray) -> list[list[GateMatch]]:
        """K(x) for each prompt: the clusters whose similarity reaches their set's threshold.

        Args:
            embeddings: ``[n_prompts, d_embed]`` unit embeddings; for a chat, pass several rows per
                prompt through ``match_groups`` instead.
        """
        return self.match_groups(embeddings, [[i] for i in range(len(embeddings))])

    def match_groups(self, embeddings: np.ndarray, groups: Sequence[Sequence[int]]) -> list[list[GateMatch]]:
        """Like ``match`` where each prompt owns several embedding rows; the highest similarity counts."""
        if self.empty:
            return [[] for _ in groups]
        sims = self.similarities(embeddings)  # [n_rows, total_clusters]
        out: list[list[GateMatch]] = []
        for rows in groups:
            best = sims[list(rows)].max(axis=0)  # [total_clusters]
            open_idx = np.nonzero(best >= self._thresholds)[0]
            out.append([GateMatch(self.sets[int(self._owner[j])].forget_set_id, int(self._cluster[j]),
                                  float(best[j])) for j in open_idx])
        return out

    def vectors_by_layer(self, matches: Sequence[GateMatch]) -> dict[int, torch.Tensor]:
        """layer -> ``[d_model]`` vector to subtract (alpha_s * mu_s folded in, Eq. 6-8)."""
        by_set: dict[str, list[int]] = {}
        for m in matches:
            by_set.setdefault(m.forget_set_id, []).append(m.cluster)
        per_layer: dict[int, tuple[list[torch.Tensor], list[float]]] = {}
        for set_id, clusters in by_set.items():
            active = self.get(set_id)
            if active.alpha == 0.0:
                continue
            art = active.artifacts
            direction = set_direction(art.psvs, clusters, art.retain_direction)
            dirs, scales = per_layer.setdefault(art.layer, ([], []))
            dirs.append(direction)
            scales.append(active.alpha * art.mean_norm)
        return {layer: combine(d, s) for layer, (d, s) in per_layer.items()}


def build_plans(vectors: Sequence[dict[int, torch.Tensor] | None], batch: int) -> dict[int, SteeringPlan]:
    """Per-layer ``SteeringPlan`` for a batch whose row ``i`` wants ``vectors[i]`` (None = untouched).

    Identical vectors across rows share one table entry.
    """
    if len(vectors) != batch:
        raise ValueError(f"expected {batch} row vectors, found {len(vectors)}")
    layers = sorted({layer for v in vectors if v for layer in v})
    plans: dict[int, SteeringPlan] = {}
    for layer in layers:
        table: list[torch.Tensor] = []
        index = torch.full((batch,), -1, dtype=torch.int32)
        for row, v in enumerate(vectors):
            if not v or layer not in v:
                continue
            vec = v[layer]
            for j, existing in enumerate(table):
                if existing is vec or torch.equal(existing, vec):
                    index[row] = j
                    break
            else:
                table.append(vec)
                index[row] = len(table) - 1
        plans[layer] = SteeringPlan(index, torch.stack(table), 1.0)
    return plans
