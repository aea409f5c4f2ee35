"""The application core shared by the CLI and the HTTP server: one model, one registry, GUARD-IT.

It loads the model once, keeps the gate snapshot in step with the registry (polling a cheap change
token), and turns pending forget sets into active ones (claim -> build -> activate | fail).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from service.db_models import ForgetSetRecord
from service.registry import InvalidTransitionError, NotFoundError, Registry
from service.settings import Settings
from steering import (
    ActiveSet,
    BuildConfig,
    ForgetSetArtifacts,
    GateState,
    Guard,
    QAPair,
    load_embedder,
    load_model,
    make_documents,
)
from steering.calibrate import calibrate_alpha
from steering.config import check_alpha, check_layer, check_threshold, default_alpha
from steering.forget_set import ForgetDocuments, check_texts
from steering.guard import SamplingParams
from steering.layers import n_layers
from steering.leakfacts import cloze_facts
from steering.loading import LoadedModel, auto_dtype, resolve_model
from steering.probes import make_probes
from steering.recheck import generate_reviewed
from steering.vectors import ProgressFn
from steering.verify import verify_forget_set

logger = logging.getLogger(__name__)

#: Verification answers are this long (a fact shows early) and run this many at a time; the long
#: attack shapes put this many words of filler before the question (past the embedder's 256 word
#: pieces, so they test the truncation class, yet cheap to prefill on a CPU).
VERIFY_TOKENS = 24
VERIFY_BATCH = 8
VERIFY_FILLER_WORDS = 400

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str) -> str:
    """``auto`` -> cuda when available, else cpu."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA, float32 on CPU (``steering.loading.auto_dtype``)."""
    if setting == "auto":
        return auto_dtype(device)
    return _DTYPES[setting]


@dataclass(frozen=True)
class Registration:
    """Validated input of a new forget set."""

    name: str
    documents: list[str] | None
    qa: list[tuple[str, str]] | None
    retain: list[str] | None
    reason: str
    requested_by: str
    ticket: str | None
    layer: int | None
    threshold: float | None
    alpha: float | None
    #: names the set protects, given explicitly (people or trigger names)
    subjects: tuple[str, ...] = ()


class Runtime:
    """One loaded model with GUARD-IT, bound to a registry.

    Args:
        settings: service settings.
        registry: an open registry (default: the one the settings name).
    """

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry.for_data_dir(settings.data_dir, settings.database_url)
        self.model_id = resolve_model(settings.model).model_id
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self._loaded: LoadedModel | None = None
        self._guard: Guard | None = None
        self._load_lock = threading.Lock()
        self._build_lock = threading.Lock()
        # sync runs on the engine thread, route threads and the builder at once. Unserialised, a
        # reader holding an older listing could install it after a newer reader did, while the newer
        # token is recorded: a revoked set would then steer until the next registry change.
        self._sync_lock = threading.Lock()
        self._token: int | None = None
        self._artifact_cache: dict[tuple[str, str], ForgetSetArtifacts] = {}

    # -- model --------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once the model and embedder are in memory."""
        return self._guard is not None

    @property
    def guard(self) -> Guard:
        """The model with its hooks; loads on first use."""
        if self._guard is None:
            with self._load_lock:
                if self._guard is None:
                    if self.settings.num_threads:
                        torch.set_num_threads(self.settings.num_threads)
                    self._loaded = load_model(self.settings.model, cache_dir=self.settings.model_cache_dir,
                                              device=self.device, dtype=self.dtype)
                    embedder = load_embedder(self.settings.embedder, device=self.device)
                    self._guard = Guard(self._loaded.model, self._loaded.tokenizer, embedder)
                    self.sync(force=True)
        return self._guard

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self.guard.tokenizer

    @property
    def n_layers(self) -> int:
        """Depth of the model."""
        return n_layers(self.guard.model)

    def default_alpha(self) -> float:
        """Strength used when a forget set names none."""
        return self.settings.default_alpha if self.settings.default_alpha is not None else default_alpha(self.model_id)

    # -- registry -> gate ---------------------------------------------------------------------
    def sync(self, *, force: bool = False) -> bool:
        """Rebuild the gate snapshot if the registry changed; returns True when it did.

        Only sets that are active, enabled and built for this model take part. The new snapshot
        replaces the old one in one assignment (a request sees a set entirely or not at all).
        """
        with self._sync_lock:
            return self._sync(force)

    def _sync(self, force: bool) -> bool:
        token = self.registry.change_token()
        if not force and token == self._token:
            return False
        if self._guard is None:
            self._token = None
            return False
        sets: list[ActiveSet] = []
        for record in self.registry.active_sets():
            if not record.enabled:
                continue
            if record.model_id != self.model_id:
                logger.warning("forget set %s was built for model %s, not %s: skipped",
                               record.id, record.model_id, self.model_id)
                continue
            try:
                artifacts = self._artifacts(record)
            except NotFoundError:
                continue  # revoked between the listing and the read
            sets.append(ActiveSet(record.id, artifacts,
                                  record.threshold if record.threshold is not None else self.settings.default_threshold,
                                  record.alpha if record.alpha is not None else self.default_alpha()))
        self._guard.replace_state(GateState(tuple(sets)))
        self._token = token
        live = {s.forget_set_id for s in sets}
        self._artifact_cache = {k: v for k, v in self._artifact_cache.items() if k[0] in live}
        return True

    def _artifacts(self, record: ForgetSetRecord) -> ForgetSetArtifacts:
        key = (record.id, record.artifacts_sha256 or "")
        if key not in self._artifact_cache:
            self._artifact_cache[key] = ForgetSetArtifacts.from_tensors(self.registry.load_artifacts(record.id))
        return self._artifact_cache[key]

    # -- forget sets ----------------------------------------------------------------------------
    def validate(self, reg: Registration) -> ForgetDocuments:
        """Check a registration fully before anything is written (raises SteeringError); returns its
        forget documents as they are stored: stripped and deduplicated, order kept."""
        qa = [QAPair(q, a) for q, a in reg.qa] if reg.qa is not None else None
        docs = make_documents(reg.documents, qa, max_documents=self.settings.max_forget_documents,
                              max_chars=self.settings.max_document_chars)
        if reg.retain is not None:
            check_texts(reg.retain, "retain", max_items=self.settings.max_forget_documents,
                        max_chars=self.settings.max_document_chars)
        if reg.threshold is not None:
            check_threshold(reg.threshold)
        if reg.alpha is not None:
            check_alpha(reg.alpha)
        if reg.layer is not None:
            check_layer(reg.layer, self.n_layers)
        return docs

    def register(self, reg: Registration, *, actor: str) -> ForgetSetRecord:
        """Validate and store a new forget set as ``pending`` (the build runs separately).

        The documents are validated here, once: what the registry stores is that validated value,
        and the build reads it back as such (``_stored``)."""
        docs = self.validate(reg)
        return self.registry.create(
            name=reg.name, documents=list(docs.documents) if docs.kind == "documents" else None,
            qa=[(p.question, p.answer) for p in docs.qa] if docs.kind == "qa" else None,
            retain=reg.retain, reason=reg.reason, requested_by=reg.requested_by, ticket=reg.ticket,
            layer=reg.layer, threshold=reg.threshold, alpha=reg.alpha, model_id=self.model_id, actor=actor,
            subjects=list(reg.subjects) or None)

    def build_config(self, layer: int | None = None, subjects: tuple[str, ...] = ()) -> BuildConfig:
        """How a new forget set is built here: its layer (None = first quartile), the server's gate rule
        (``default_gate``), document cap, and the subjects given at registration."""
        return BuildConfig(layer=layer, max_documents=self.settings.max_forget_documents,
                           gate=self.settings.default_gate, subjects=subjects)

    def build_next(self, *, actor: str = "system:builder",
                   progress: ProgressFn | None = None) -> ForgetSetRecord | None:
        """Claim one pending set, build it and activate it (or mark it failed); None if none pending."""
        with self._build_lock:
            record = self.registry.claim_next_pending(actor=actor)
            if record is None:
                return None
            started = time.perf_counter()
            try:
                docs, retain = self._stored(record.id)
                config = self.build_config(record.layer, tuple(record.subject_names))
                artifacts = self.guard.build(docs, retain=retain or None, config=config, progress=progress)
                threshold = record.threshold if record.threshold is not None else self.settings.default_threshold
                alpha = (record.alpha if record.alpha is not None
                         else self._calibrated_alpha(docs, artifacts, threshold, progress))
            except Exception as exc:  # noqa: BLE001 - any build failure marks the set failed, never half-active
                logger.exception("build of forget set %s failed", record.id)
                # Revoked or claimed again meanwhile: fail refuses, and the build worker logs it.
                return self.registry.fail(record.id, error=f"{type(exc).__name__}: {exc}", actor=actor,
                                          attempt=record.attempts)
            try:
                done = self.registry.activate(
                    record.id, artifacts=artifacts.to_tensors(), layer=artifacts.layer, threshold=threshold,
                    alpha=alpha, n_clusters=artifacts.k, silhouette=artifacts.silhouette,
                    build_seconds=time.perf_counter() - started, actor=actor, attempt=record.attempts)
            except InvalidTransitionError:  # revoked or claimed again while building: nothing is stored
                return self.registry.get(record.id)
            self.sync()
        if self.settings.verify_on_build:
            self.verify(record.id)
        return done

    def _stored(self, fs_id: str) -> tuple[ForgetDocuments, list[str]]:
        """A set's stored texts: the forget documents and the retain list.

        Not validated again: only ``register`` writes them, after ``validate``, so they are the
        validated value (a set registered under larger limits still builds; the builder's own
        ``max_documents`` cap still applies)."""
        stored = self.registry.documents(fs_id)
        return stored.forget, list(stored.retain)

    def verify(self, fs_id: str, *, kinds: Sequence[str] | None = None) -> dict[str, Any] | None:
        """Run an active set's verification probes through the answer policy and store the report.

        The report (``steering.verify``: leak, abstain, degenerate and changed-neighbour rates per probe
        kind, with examples) is what a compliance officer attaches to the ticket. It quotes forget-set
        content: it is stored with the set (deleted on revocation) and shown to the forget scope only.
        A failure is logged and leaves the set active without a report.

        Args:
            fs_id: an active set.
            kinds: only these probe kinds (default: every kind, ``verify_per_kind`` probes each).
        """
        try:
            return self._verify(fs_id, kinds)
        except Exception:  # noqa: BLE001 - the set is active already; a missing report is visible in GET
            logger.exception("verification of forget set %s failed", fs_id)
            return None

    def _verify(self, fs_id: str, kinds: Sequence[str] | None) -> dict[str, Any] | None:
        state = self.guard.state
        if fs_id not in state.ids():
            return None
        art = state.get(fs_id).artifacts
        if art.leak_profile is None:
            return None
        record = self.registry.get(fs_id)
        docs, _ = self._stored(fs_id)
        subjects = [*record.subject_names, *(s.names[0].title() for s in art.subjects if s.names)]
        facts = cloze_facts(docs, subjects=subjects) if docs.documents else []
        probes = make_probes(docs, subjects=subjects, facts=facts, per_kind=self.settings.verify_per_kind,
                             filler_words=VERIFY_FILLER_WORDS)
        if kinds is not None:
            probes = [p for p in probes if p.kind in kinds]
        params = SamplingParams(max_new_tokens=VERIFY_TOKENS)
        started = time.perf_counter()

        def answer(prompts: list[Any], steer: bool) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = [{} for _ in prompts]
            order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))  # similar lengths batch
            for start in range(0, len(order), VERIFY_BATCH):
                rows = order[start:start + VERIFY_BATCH]
                batch = [prompts[i] for i in rows]
                gens = (generate_reviewed(self.guard, batch, params, state=state,
                                          recheck=self.settings.answer_recheck,
                                          leak_check=self.settings.leak_check,
                                          abstain_text=self.settings.abstain_text)
                        if steer else self.guard.generate(batch, params, steer=False))
                for i, g in zip(rows, gens, strict=True):
                    out[i] = {"text": g.text, "steered": g.steered, "abstained": g.abstained}
            return out

        report = verify_forget_set(probes, lambda p: answer(p, True), profile=art.leak_profile,
                                   baseline=lambda p: answer(p, False))
        payload = {"forget_set_id": fs_id, "model_id": self.model_id, "probes": len(probes),
                   "seconds": round(time.perf_counter() - started, 1), "max_new_tokens": VERIFY_TOKENS,
                   **json.loads(report.to_json()),
                   "markdown": report.to_markdown(title=f"Verification of forget set {record.name} ({fs_id})")}
        self.registry.set_report(fs_id, payload)
        logger.info("forget set %s verified: %d probes in %.1f s", fs_id, len(probes), payload["seconds"])
        return payload

    def _calibrated_alpha(self, docs: ForgetDocuments, artifacts: ForgetSetArtifacts, threshold: float,
                          progress: ProgressFn | None) -> float:
        if not self.settings.calibrate_alpha:
            return self.default_alpha()
        result = calibrate_alpha(self.guard, docs, artifacts, threshold=threshold, fallback=self.default_alpha(),
                                 progress=progress)
        logger.info("alpha %.2f (calibrated=%s, known answers %d, forgotten %.2f, collapsed %.2f)",
                    result.alpha, result.measured, result.known, result.forgotten, result.collapsed)
        return result.alpha

    def close(self) -> None:
        """Release the registry connection pool."""
        self.registry.close()

