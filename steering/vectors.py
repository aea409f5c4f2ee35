"""Build a forget set's artifacts (METHOD.md steps 1-5): centroids, PSVs, retain direction, mean norm."""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import numpy as np
import torch

from steering.activations import PooledActivations, pool_activations
from steering.clustering import Clustering, cluster_embeddings
from steering.config import (
    AUTO,
    DOC_GATES,
    GATE_RULES,
    HYBRID,
    PAPER,
    SUBJECT,
    BuildConfig,
    GateRule,
    GateSetting,
    check_layer,
    default_layer,
)
from steering.entities import Subject, mine_entities, mine_subjects, named_subjects, names_subject
from steering.errors import ConfigError, ForgetSetError, SteeringError
from steering.forget_set import ForgetDocuments, render_documents, render_texts
from steering.hooks import ResidualHooks
from steering.layers import n_layers
from steering.leakcheck import LeakProfile, build_leak_profile

logger = logging.getLogger(__name__)

#: ``auto`` uses the subject gate when the people mined (every subject of the set together) are
#: named in at least this share of the documents, else hybrid. Measured: RWKU passages (one person
#: each) 0.37-1.0, median 0.85; TOFU forget01, forget05 and forget10 (2, 10 and 20 authors, every
#: one mined) 1.0.
AUTO_MIN_COVERAGE = 0.3

#: Called as progress(stage, done, total) while building. Stages, in order: ``embed`` and ``cluster``
#: (0 of 1, then 1 of 1), ``forget`` and ``retain`` (texts pooled so far), then the calibration's
#: ``calibrate`` (generate passes so far, of the most it may take).
ProgressFn = Callable[[str, int, int], None]

#: Build stages in order with their rough share of a build's time (embedding and clustering are
#: quick, pooling a few seconds, calibration's generation the most), for one overall fraction.
STAGE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("embed", 0.05), ("cluster", 0.05), ("forget", 0.25), ("retain", 0.05), ("calibrate", 0.6))


def overall_fraction(stage: str, done: int, total: int) -> float:
    """The whole build's progress in [0, 1] when ``stage`` is ``done`` of ``total`` through."""
    before = 0.0
    for name, weight in STAGE_WEIGHTS:
        if name == stage:
            return min(1.0, before + weight * min(1.0, done / max(1, total)))
        before += weight
    return 0.0


@dataclass(frozen=True)
class ForgetSetArtifacts:
    """Everything the online part needs for one forget set.

    Attributes:
        centroids: ``[k, d_embed]`` unit gate centroids c_j.
        psvs: ``[k, d_model]`` prototype steering vectors.
        retain_direction: ``[d_model]`` unit retain direction r.
        mean_norm: mu, mean ||h_L|| over the forget set's pooled tokens.
        layer: decoder block the PSVs were read at.
        labels: ``[n_docs]`` cluster of each document.
        silhouette: mean silhouette of the chosen k (None when k = 1).
        gate: ``"paper"`` (centroids and T only) or ``"hybrid"`` (see ``steering.gates``).
        doc_embeddings: ``[n_docs, d_embed]`` unit embeddings of the documents (the hybrid and
            subject gates read them, the leak check's restated rule too); None when stored without.
        entities: names mined from the documents (hybrid gate).
        subjects: whom the set is about (subject gate; under the hybrid gate, the names given at
            registration), each named by a prompt opens the set.
        leak_profile: the set's specific facts, which the answer policy looks for in every answer
            (``steering.leakcheck``); None for artifacts stored before it existed.
    """

    centroids: torch.Tensor
    psvs: torch.Tensor
    retain_direction: torch.Tensor
    mean_norm: float
    layer: int
    labels: torch.Tensor
    silhouette: float | None
    gate: GateRule = PAPER
    doc_embeddings: torch.Tensor | None = None
    entities: tuple[str, ...] = ()
    subjects: tuple[Subject, ...] = ()
    leak_profile: LeakProfile | None = None
    @property
    def k(self) -> int:
        """Number of clusters."""
        return int(self.centroids.shape[0])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict for safetensors storage."""
        return {
            "centroids": self.centroids.contiguous(),
            "psvs": self.psvs.contiguous(),
            "retain_direction": self.retain_direction.contiguous(),
            "mean_norm": torch.tensor([self.mean_norm], dtype=torch.float64),
            "layer": torch.tensor([self.layer], dtype=torch.int64),
            "labels": self.labels.contiguous(),
            "silhouette": torch.tensor([float("nan") if self.silhouette is None else self.silhouette],
                                       dtype=torch.float64),
            "gate": torch.tensor([GATE_RULES.index(self.gate)], dtype=torch.int64),
            "entities": torch.tensor(list(json.dumps(list(self.entities)).encode("utf-8")), dtype=torch.uint8),
            **({"doc_embeddings": self.doc_embeddings.contiguous()} if self.doc_embeddings is not None else {}),
            **({"subjects": _json_tensor([s.to_json() for s in self.subjects])} if self.subjects else {}),
            **({"leak_profile": _text_tensor(self.leak_profile.to_json())} if self.leak_profile else {}),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> ForgetSetArtifacts:
        """Inverse of ``to_tensors``."""
        sil = float(tensors["silhouette"][0])
        return cls(
            centroids=tensors["centroids"].float(),
            psvs=tensors["psvs"].float(),
            retain_direction=tensors["retain_direction"].float(),
            mean_norm=float(tensors["mean_norm"][0]),
            layer=int(tensors["layer"][0]),
            labels=tensors["labels"],
            silhouette=None if np.isnan(sil) else sil,
            gate=GATE_RULES[int(tensors["gate"][0])] if "gate" in tensors else PAPER,
            doc_embeddings=tensors["doc_embeddings"].float() if "doc_embeddings" in tensors else None,
            entities=tuple(json.loads(bytes(tensors["entities"].tolist()).decode("utf-8")))
            if "entities" in tensors else (),
            subjects=_stored_subjects(tensors),
            leak_profile=LeakProfile.from_json(bytes(tensors["leak_profile"].tolist()).decode("utf-8"))
            if "leak_profile" in tensors else None,
        )


def _json_tensor(value: Any) -> torch.Tensor:
    """A JSON value as a uint8 tensor (safetensors stores tensors only)."""
    return torch.tensor(list(json.dumps(value).encode("utf-8")), dtype=torch.uint8)


def _text_tensor(text: str) -> torch.Tensor:
    """UTF-8 text as a uint8 tensor."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).clone()


def _stored_subjects(tensors: dict[str, torch.Tensor]) -> tuple[Subject, ...]:
    """Subjects stored with the artifacts; artifacts stored before sets had several carry one."""
    if "subjects" in tensors:
        value = json.loads(bytes(tensors["subjects"].tolist()).decode("utf-8"))
        return tuple(Subject.from_json(s) for s in value)
    if "subject" in tensors:
        return (Subject.from_json(json.loads(bytes(tensors["subject"].tolist()).decode("utf-8"))),)
    return ()


#: Pooled retain corpora per model, by (layer, truncation, texts): every build with the same retain
#: texts (the built-in neutral corpus, unless a set brings its own) reuses the first build's pooling.
_RETAIN_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[int, int, str], PooledActivations]] = (
    weakref.WeakKeyDictionary())


def pooled_retain(model: torch.nn.Module, tokenizer: Any, hooks: ResidualHooks, layer: int,
                  texts: Sequence[str], *, batch_size: int, max_tokens: int,
                  progress: Callable[[int], None] | None = None) -> PooledActivations:
    """``pool_activations`` over retain texts, cached per model and layer (the model is frozen)."""
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
    key = (layer, max_tokens, digest)
    cache = _RETAIN_CACHE.setdefault(model, {})
    if key not in cache:
        cache[key] = pool_activations(model, tokenizer, hooks, layer, render_texts(texts),
                                      batch_size=batch_size, max_tokens=max_tokens, progress=progress)
    elif progress is not None:
        progress(len(texts))
    return cache[key]


def neutral_corpus() -> list[str]:
    """The built-in neutral retain corpus shipped with the package."""
    text = resources.files("steering").joinpath("data/neutral_corpus.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def embed(embedder: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """``[n, d_embed]`` unit sentence embeddings (float32)."""
    out = embedder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                          normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class GateParts:
    """The gate's half of a forget set: everything that needs only the embedder."""

    clustering: Clustering
    doc_embeddings: np.ndarray  # [n_docs, d_embed]
    entities: tuple[str, ...]
    subjects: tuple[Subject, ...] = ()
    #: the rule these parts are for (``auto`` resolved); None = the config's
    mode: GateRule | None = None


def build_gate(embedder: Any, docs: ForgetDocuments, config: BuildConfig = BuildConfig(),
               progress: ProgressFn | None = None) -> GateParts:
    """Embed, cluster (k by silhouette) and mine names for the hybrid or subject gate (METHOD.md step 2).

    ``auto`` resolves here, once per set: the subject gate for a set about people (the people
    mined are named in at least ``AUTO_MIN_COVERAGE`` of the documents), else the hybrid gate.
    """
    report = progress or (lambda stage, done, total: None)
    report("embed", 0, 1)
    emb = embed(embedder, docs.gate_texts())  # [n_docs, d_embed]
    report("embed", 1, 1)
    report("cluster", 0, 1)
    clustering = cluster_embeddings(emb, k_max=config.k_max, seed=config.seed)
    report("cluster", 1, 1)
    mode, entities, subjects = gate_names(docs.gate_texts(), clustering.labels, config.gate,
                                          subject=config.subject, subjects=config.subjects, questions=bool(docs.qa))
    return GateParts(clustering, emb, entities, subjects, mode)


def gate_names(texts: Sequence[str], labels: np.ndarray, gate: GateSetting, *, subject: str | None = None,
               subjects: Sequence[str] = (), questions: bool = False) -> tuple[GateRule, tuple[str, ...],
                                                                                   tuple[Subject, ...]]:
    """The resolved rule, its names and subjects for documents clustered as ``labels`` ``[n_docs]``.

    Args:
        texts: the set's gate texts.
        labels: ``[n_docs]`` cluster of each document.
        gate: ``paper``, ``hybrid``, ``subject`` or ``auto``.
        subject: the set's own name (the first subject's name, see ``mine_subjects``).
        subjects: names given at registration (people or trigger names): subjects under every rule
            but ``paper``.
        questions: the texts are QA pairs (see ``steering.entities.mine_subjects``).
    """
    given = tuple(n.strip() for n in subjects if n.strip())
    if gate in (SUBJECT, AUTO):
        found = mine_subjects(texts, given, name=subject, questions=questions)
        if gate == SUBJECT or subject_coverage(texts, found) >= AUTO_MIN_COVERAGE:
            return SUBJECT, tuple(dict.fromkeys(n for s in found for n in s.names)), found
        gate = HYBRID
    if gate == HYBRID:
        # A name must recur in a good share of a typical cluster, so places and genres mentioned
        # in passing are not taken for what the set is about.
        typical = float(np.median(np.bincount(labels)))
        return HYBRID, mine_entities(texts, min_count=max(2, int(0.4 * typical))), named_subjects(texts, given)
    return PAPER, (), ()


def with_gate(artifacts: ForgetSetArtifacts, gate: GateSetting, texts: Sequence[str], *,
              doc_embeddings: np.ndarray | None = None, subject: str | None = None,
              subjects: Sequence[str] = ()) -> ForgetSetArtifacts:
    """The same steering vectors under another gate rule (names mined again from the documents).

    Args:
        artifacts: built artifacts.
        gate: ``paper``, ``hybrid``, ``subject`` or ``auto``.
        texts: the set's gate texts (``ForgetDocuments.gate_texts``), in build order.
        doc_embeddings: ``[n_docs, d_embed]`` when ``artifacts`` has none (stored without them).
        subject: the subject's name for the subject rule.
        subjects: names given at registration (see ``gate_names``).
    """
    mode, entities, found = gate_names(texts, artifacts.labels.numpy(), gate, subject=subject, subjects=subjects)
    emb = artifacts.doc_embeddings if doc_embeddings is None else torch.from_numpy(doc_embeddings)
    if mode in DOC_GATES and emb is None:
        raise ConfigError(f"expected document embeddings for the {mode} gate, found none", field="doc_embeddings")
    return replace(artifacts, gate=mode, entities=entities, subjects=found,
                   doc_embeddings=emb)


def subject_coverage(texts: Sequence[str], subjects: Subject | Sequence[Subject]) -> float:
    """Share of the documents that name one of the subjects (``steering.entities.names_subject``)."""
    people = [subjects] if isinstance(subjects, Subject) else list(subjects)
    return sum(any(names_subject(t, s) for s in people) for t in texts) / max(1, len(texts))


def gate_only_artifacts(parts: GateParts, gate: GateSetting) -> ForgetSetArtifacts:
    """Artifacts with the gate's parts and empty steering parts (gate evaluation without the LLM).

    ``gate="auto"`` takes the rule the parts were resolved to.
    """
    if gate == AUTO:
        gate = parts.mode or HYBRID
    k = parts.clustering.k
    return ForgetSetArtifacts(
        centroids=torch.from_numpy(parts.clustering.centroids), psvs=torch.zeros(k, 1),
        retain_direction=torch.zeros(1), mean_norm=0.0, layer=0,
        labels=torch.from_numpy(parts.clustering.labels), silhouette=parts.clustering.silhouette, gate=gate,
        doc_embeddings=torch.from_numpy(parts.doc_embeddings),
        entities=parts.entities, subjects=parts.subjects if gate in DOC_GATES else ())


def build_artifacts(
    model: torch.nn.Module,
    tokenizer: Any,
    embedder: Any,
    hooks: ResidualHooks,
    docs: ForgetDocuments,
    *,
    retain: Sequence[str] | None = None,
    config: BuildConfig = BuildConfig(),
    progress: ProgressFn | None = None,
) -> ForgetSetArtifacts:
    """Offline GUARD-IT for one forget set.

    Args:
        model: frozen causal LM.
        tokenizer: its tokenizer.
        embedder: sentence-transformer phi.
        hooks: the model's residual hooks (read site = write site).
        docs: validated forget documents.
        retain: retain texts; None uses the built-in neutral corpus.
        config: layer, k_max, seed, batching.
        progress: optional progress callback.

    Returns:
        The artifacts; nothing is stored here.
    """
    if len(docs) == 0:
        raise ForgetSetError("expected at least one forget document, found none", field="documents")
    if len(docs) > config.max_documents:
        raise ForgetSetError(f"expected at most {config.max_documents} documents, found {len(docs)}",
                             field="documents")
    depth = n_layers(model)
    layer = default_layer(depth) if config.layer is None else check_layer(config.layer, depth)
    parts = build_gate(embedder, docs, config, progress)
    gate = parts.mode or HYBRID  # build_gate always resolves the rule (auto included)
    clustering = parts.clustering
    rendered = render_documents(tokenizer, docs)
    total = len(rendered)

    def tick(stage: str, count: list[int]) -> Callable[[int], None]:
        def inner(n: int) -> None:
            count[0] += n
            if progress is not None:
                progress(stage, count[0], total if stage == "forget" else n_retain)
        return inner

    retain_texts = list(retain) if retain else neutral_corpus()
    n_retain = len(retain_texts)
    forget = pool_activations(model, tokenizer, hooks, layer, rendered, batch_size=config.batch_size,
                              max_tokens=config.max_doc_tokens, progress=tick("forget", [0]))
    kept = pooled_retain(model, tokenizer, hooks, layer, retain_texts, batch_size=config.batch_size,
                         max_tokens=config.max_doc_tokens, progress=tick("retain", [0]))
    if forget.n_tokens == 0:
        raise SteeringError("expected pooled tokens in the forget documents, found none (all too short?)")
    labels = torch.from_numpy(clustering.labels)  # [n_docs]
    psvs = torch.stack([forget.pooled[labels == j].mean(dim=0) for j in range(clustering.k)])  # [k, d_model]
    r = kept.pooled.double().mean(dim=0)
    r = (r / r.norm().clamp_min(1e-12)).float()
    mu = forget.token_norm_sum / forget.n_tokens
    logger.info("built forget set: %d docs, k=%d, layer=%d, mu=%.2f", total, clustering.k, layer, mu)
    return ForgetSetArtifacts(
        centroids=torch.from_numpy(clustering.centroids),
        psvs=psvs,
        retain_direction=r,
        mean_norm=mu,
        layer=layer,
        labels=labels,
        silhouette=clustering.silhouette,
        gate=gate,
        doc_embeddings=torch.from_numpy(parts.doc_embeddings),
        entities=parts.entities,
        subjects=parts.subjects if gate in DOC_GATES else (),
        leak_profile=build_leak_profile(docs, subjects=config.subjects),
    )
