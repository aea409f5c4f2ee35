"""The GUARD-IT gate and per-request directions (arXiv 2605.12765, METHOD.md steps 6-7).

A ``GateState`` is an immutable snapshot of every active forget set. Swapping the snapshot is a
single reference assignment, so a request sees a forget set entirely or not at all.

Three gate rules, chosen per forget set when it is built:
- ``paper``: cluster j opens when cos(c_j, e) >= T.
- ``hybrid`` (default): let s be the highest similarity of the prompt to any single forget document;
  the cluster of that document opens when s >= T + HIGH_MARGIN, or when s >= T - LOW_MARGIN and
  the prompt names one of the set's mined entities. Centroids average
  away what makes each document specific; names are what a question about a person carries. On
  TOFU forget10 this took paraphrase recall from 0.95 to 0.99 and retain90 false opens from 4.3%
  to 1.0% (benchmark ``tofu-gate``).
- ``subject``: for a set about people. Like ``hybrid`` with a far lower floor
  (T - SUBJECT_LOW_MARGIN) when the prompt names one of the people the set is about (full name,
  an alias, the surname alone or a distinctive given name, in any spelling:
  ``steering.entities.Subject``, ``steering.names``); names of the person's works, places and relatives no
  longer count, since questions about those are what must be kept (benchmark ``rwku``). A common given
  name alone ("Stephen was born in ___, Maine.") names the person only at a higher floor
  (T - GIVEN_LOW_MARGIN): the name could be anyone's, the rest of the prompt must say whose it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from steering.config import DOC_GATES, PAPER, SUBJECT, check_alpha, check_threshold
from steering.decodings import ENGLISH_MIN_SHARE, english_share
from steering.entities import given_alone, mentions, names_subject
from steering.errors import UnknownForgetSetError
from steering.hooks import SteeringPlan
from steering.names import name_parts, respellings
from steering.redirect import combine, set_direction
from steering.vectors import ForgetSetArtifacts

#: Hybrid gate margins around the set's threshold T (see the module docstring).
HIGH_MARGIN = 0.15
LOW_MARGIN = 0.1
#: Subject gate: the floor below T when the prompt names the set's subject (measured on RWKU: at
#: T = 0.55 a floor of 0.30 keeps other people's questions under 0.5% false opens).
SUBJECT_LOW_MARGIN = 0.25
#: ... and when it names them only by a common given name ("Stephen was born in ___, Maine."): the
#: name alone could be anyone's, so the prompt must also be nearer the set's documents.
GIVEN_LOW_MARGIN = 0.2


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
    _thresholds: np.ndarray = field(init=False, repr=False)  # [total_clusters]; inf for hybrid sets

    def __post_init__(self) -> None:
        parts = [s.artifacts.centroids.numpy().astype(np.float32) for s in self.sets]
        width = parts[0].shape[1] if parts else 0
        object.__setattr__(self, "_centroids", np.concatenate(parts) if parts else np.zeros((0, width), np.float32))
        object.__setattr__(self, "_owner", np.concatenate(
            [np.full(p.shape[0], i) for i, p in enumerate(parts)]) if parts else np.zeros(0, np.int64))
        object.__setattr__(self, "_cluster", np.concatenate(
            [np.arange(p.shape[0]) for p in parts]) if parts else np.zeros(0, np.int64))
        object.__setattr__(self, "_thresholds", np.concatenate(
            [np.full(p.shape[0], s.threshold if s.artifacts.gate == PAPER else np.inf, np.float32)
             for s, p in zip(self.sets, parts, strict=True)])
            if parts else np.zeros(0, np.float32))

    @property
    def width(self) -> int:
        """Embedding width of the centroids (0 when empty)."""
        return int(self._centroids.shape[1])

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
        sims: np.ndarray = np.asarray(embeddings, dtype=np.float32) @ self._centroids.T
        return sims

    def match(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> list[list[GateMatch]]:
        """K(x) for each prompt: the clusters whose similarity reaches their set's threshold.

        Args:
            embeddings: ``[n_prompts, d_embed]`` unit embeddings; for a chat, pass several rows per
                prompt through ``match_groups`` instead.
            texts: the prompts' texts (the hybrid gate looks for names in them).
        """
        return self.match_groups(embeddings, [[i] for i in range(len(embeddings))], texts)

    def match_groups(self, embeddings: np.ndarray, groups: Sequence[Sequence[int]],
                     texts: Sequence[str] | None = None, *,
                     names: Sequence[Sequence[str]] | None = None) -> list[list[GateMatch]]:
        """Like ``match`` where each prompt owns several embedding rows; the highest similarity counts.

        Args:
            embeddings: ``[n_rows, d_embed]`` unit embeddings of every prompt's rows.
            groups: per prompt, its rows.
            texts: indexed like the rows; names are looked for in a prompt's row texts ...
            names: ... unless given here: per prompt, the full texts to look for names in
                (``steering.gate_input.GateInput.full_texts``).
        """
        if self.empty:
            return [[] for _ in groups]
        sims = self.similarities(embeddings)  # [n_rows, total_clusters]
        out: list[list[GateMatch]] = []
        for rows in groups:
            if not rows:  # a prompt with no text (empty turns) opens nothing
                out.append([])
                continue
            best = sims[list(rows)].max(axis=0)  # [total_clusters]
            open_idx = np.nonzero(best >= self._thresholds)[0]
            found = {(int(self._owner[j]), int(self._cluster[j])): float(best[j]) for j in open_idx}
            if names is not None:
                row_texts = list(names[len(out)])
            else:
                row_texts = [texts[r] for r in rows] if texts is not None else []
            for owner, cluster, sim in self._hybrid(embeddings[list(rows)], row_texts):
                found[(owner, cluster)] = max(sim, found.get((owner, cluster), sim))
            out.append([GateMatch(self.sets[o].forget_set_id, c, sim) for (o, c), sim in sorted(found.items())])
        return out

    def _hybrid(self, rows: np.ndarray, texts: Sequence[str]) -> list[tuple[int, int, float]]:
        """Clusters opened by the hybrid rule for one prompt's embedding rows ``[n_rows, d_embed]``."""
        opened: list[tuple[int, int, float]] = []
        for owner, active in enumerate(self.sets):
            art = active.artifacts
            if art.gate not in DOC_GATES or art.doc_embeddings is None:
                continue
            doc_sims = np.asarray(rows, dtype=np.float32) @ art.doc_embeddings.numpy().T  # [n_rows, n_docs]
            best_doc = int(doc_sims.max(axis=0).argmax())
            s = float(doc_sims[:, best_doc].max())
            if s >= active.threshold + HIGH_MARGIN or _named(art, s, active.threshold, texts):
                opened.append((owner, int(art.labels[best_doc]), s))
        return opened

    def vectors_by_layer(self, matches: Sequence[GateMatch], *, boost: float = 0.0) -> dict[int, torch.Tensor]:
        """layer -> ``[d_model]`` vector to subtract (alpha_s * mu_s folded in, Eq. 6-8).

        ``boost`` is added to each open set's alpha (the answer policy's escalation), up to 1; a set
        switched off with alpha 0 stays off.
        """
        by_set: dict[str, list[int]] = {}
        for m in matches:
            by_set.setdefault(m.forget_set_id, []).append(m.cluster)
        per_layer: dict[int, tuple[list[torch.Tensor], list[float]]] = {}
        for set_id, clusters in by_set.items():
            active = self.get(set_id)
            alpha = active.alpha
            if boost and alpha > 0.0:
                alpha = max(alpha, min(1.0, alpha + boost))
            if alpha == 0.0:
                continue
            art = active.artifacts
            direction = set_direction(art.psvs, clusters, art.retain_direction)
            dirs, scales = per_layer.setdefault(art.layer, ([], []))
            dirs.append(direction)
            scales.append(alpha * art.mean_norm)
        return {layer: combine(d, s) for layer, (d, s) in per_layer.items()}


def _named(art: ForgetSetArtifacts, s: float, threshold: float, texts: Sequence[str]) -> bool:
    """The name half of the hybrid and subject rules, for a prompt whose best document scores ``s``.

    Naming any subject of the set counts (a set about two people protects both); under the hybrid
    rule the subjects are the names given at registration, at the hybrid floor.
    """
    floor = threshold - (SUBJECT_LOW_MARGIN if art.gate == SUBJECT else LOW_MARGIN)
    if s < floor:
        # The English embedder scores a prompt in another language low whatever it asks (Chinese,
        # Japanese, Korean near zero), so there a full name is enough on its own.
        names = [n for n in ([n for subject in art.subjects for n in subject.names] or art.entities)
                 if len(name_parts(n)) >= 2]
        return (bool(names) and english_share(" ".join(texts)) < ENGLISH_MIN_SHARE
                and any(mentions(t, names) for t in texts))
    if any(names_subject(t, subject) for subject in art.subjects for t in texts):
        return True
    if art.gate == SUBJECT:
        return s >= threshold - GIVEN_LOW_MARGIN and any(
            given_alone(r, subject, common=True) for subject in art.subjects for t in texts
            for r in (t, *respellings(t)))
    return any(mentions(t, art.entities) for t in texts)


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
