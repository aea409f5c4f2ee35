"""GUARD-IT end to end on one frozen model (arXiv 2605.12765): build, gate, steer, generate.

``Guard`` owns the hooks of one model (registered once) and an immutable ``GateState`` snapshot
that is swapped atomically when forget sets are activated or revoked.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from steering.config import BuildConfig, check_alpha, check_layer, check_threshold
from steering.decoding import run_batch
from steering.errors import ConfigError
from steering.forget_set import ForgetDocuments, chat_prompt
from steering.gate_input import gate_input
from steering.gates import ActiveSet, GateMatch, GateState, build_plans
from steering.hooks import ResidualHooks, SteeringPlan
from steering.layers import d_model, n_layers
from steering.types import Prompt
from steering.vectors import ForgetSetArtifacts, ProgressFn, build_artifacts, embed


@dataclass(frozen=True)
class SamplingParams:
    """Decoding parameters; temperature 0 is greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: never end at EOS, always produce ``max_new_tokens`` (benchmarks; vLLM's field of the same name)
    ignore_eos: bool = False


@dataclass(frozen=True)
class Generation:
    """One generated answer and how it came about."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...]
    steered: bool
    matched: tuple[GateMatch, ...]
    #: True when the gate stayed closed on the prompt, opened on the prompt plus the unsteered answer,
    #: and this answer was generated again, steered (``steering.recheck``).
    rechecked: bool = False
    #: True when the answer policy replaced the model's answer by the neutral answer (``steering.recheck``).
    abstained: bool = False
    #: Why it abstained (``leak``, ``leak_after_escalation``, ``degenerate``, ``closed_question``); None otherwise.
    abstain_reason: str | None = None
    #: Strength added to the open sets' alpha for this answer (the answer policy's escalation).
    boost: float = 0.0


@dataclass(frozen=True)
class RowPlan:
    """The gate's decision for one row of a batch: what opened, and what to subtract where.

    Attributes:
        matched: the open clusters (kept for unsteered rows too: ``compare`` shows them).
        vectors: layer -> ``[d_model]`` vector for ``steering.hooks`` (None: the row is untouched).
        boost: strength added to every open set's alpha (answer policy escalation; 0 normally).
    """

    matched: tuple[GateMatch, ...] = ()
    vectors: dict[int, torch.Tensor] | None = None
    boost: float = 0.0

    @property
    def steered(self) -> bool:
        """True when a hook changes this row."""
        return self.vectors is not None


def batch_plans(rows: Sequence[RowPlan]) -> dict[int, SteeringPlan]:
    """Per-layer hook plans for a batch whose row ``i`` follows ``rows[i]``."""
    return build_plans([r.vectors for r in rows], len(rows))


class Guard:
    """A frozen causal LM with GUARD-IT applied by forward hooks.

    Args:
        model: causal LM in eval mode.
        tokenizer: its tokenizer (left padding).
        embedder: the gate's sentence-transformer.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, embedder: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.embedder = embedder
        self.hooks = ResidualHooks(model)
        self._state = GateState()
        self._lock = threading.Lock()

    # -- forget sets --------------------------------------------------------------------------
    @property
    def state(self) -> GateState:
        """The current snapshot (read once per request)."""
        return self._state

    def build(self, docs: ForgetDocuments, *, retain: Sequence[str] | None = None,
              config: BuildConfig = BuildConfig(), progress: ProgressFn | None = None) -> ForgetSetArtifacts:
        """Offline part for one forget set; does not activate it."""
        return build_artifacts(self.model, self.tokenizer, self.embedder, self.hooks, docs,
                               retain=retain, config=config, progress=progress)

    def activate(self, forget_set_id: str, artifacts: ForgetSetArtifacts, *, threshold: float,
                 alpha: float) -> None:
        """Make a forget set take effect for every request that starts after this call."""
        active = ActiveSet(forget_set_id, artifacts, check_threshold(threshold), check_alpha(alpha))
        self._check_artifacts(artifacts)
        self.hooks.ensure(artifacts.layer)
        with self._lock:
            self._state = self._state.with_set(active)

    def deactivate(self, forget_set_id: str) -> None:
        """Remove a forget set's clusters from the gate at once (revocation, disabling)."""
        with self._lock:
            self._state = self._state.without(forget_set_id)

    def replace_state(self, state: GateState) -> None:
        """Swap in a whole snapshot (used when syncing with a registry)."""
        for s in state.sets:
            self._check_artifacts(s.artifacts)
            self.hooks.ensure(s.artifacts.layer)
        with self._lock:
            self._state = state

    def _check_artifacts(self, artifacts: ForgetSetArtifacts) -> None:
        width = d_model(self.model)
        if artifacts.psvs.shape[-1] != width or artifacts.retain_direction.shape != (width,):
            raise ConfigError(f"expected artifacts of width {width} for this model, found steering vectors of "
                              f"shape {tuple(artifacts.psvs.shape)}: built for another model?", field="artifacts")
        check_layer(artifacts.layer, n_layers(self.model))

    # -- online -------------------------------------------------------------------------------
    def gate(self, prompts: Sequence[Prompt], state: GateState | None = None) -> list[list[GateMatch]]:
        """K(x) for each prompt against ``state`` (default: the current snapshot).

        The gate reads every turn in windows (``steering.gate_input``); the best window counts.
        """
        state = state or self._state
        if state.empty:
            return [[] for _ in prompts]
        groups: list[list[int]] = []
        rows: list[str] = []
        names: list[tuple[str, ...]] = []
        for prompt in prompts:
            seen = gate_input(prompt)
            groups.append(list(range(len(rows), len(rows) + len(seen.windows))))
            rows.extend(seen.windows)
            names.append(seen.full_texts)
        emb = embed(self.embedder, rows) if rows else np.zeros((0, state.width), np.float32)
        return state.match_groups(emb, groups, names=names)

    def plan(self, prompts: Sequence[Prompt], state: GateState | None = None, *,
             steer: bool | Sequence[bool] = True, forced: Sequence[Sequence[GateMatch] | None] | None = None,
             boost: float | Sequence[float] = 0.0) -> list[RowPlan]:
        """The one way a batch is gated: a ``RowPlan`` per prompt (every caller goes through here).

        Args:
            prompts: what each row's model reads.
            state: gate snapshot (default: the current one, read once).
            steer: False (or False for a row) keeps the row untouched (``compare``'s unsteered arm);
                the gate decision is still reported.
            forced: per row, a decision fixed in advance instead of gating the prompt (the answer
                policy's second pass); None gates. Matches of sets no longer active are dropped.
            boost: strength added to each open set's alpha, per row or for all.
        """
        state = state or self._state
        n = len(prompts)
        flags = [steer] * n if isinstance(steer, bool) else list(steer)
        boosts = [boost] * n if isinstance(boost, (int, float)) else list(boost)
        fixed = list(forced) if forced is not None else [None] * n
        if not (len(flags) == len(boosts) == len(fixed) == n):
            raise ConfigError(f"expected one steer flag, boost and forced decision per prompt ({n}), found "
                              f"{len(flags)}, {len(boosts)} and {len(fixed)}", field="prompts")
        to_gate = [i for i in range(n) if fixed[i] is None]
        gated = iter(self.gate([prompts[i] for i in to_gate], state) if to_gate else [])
        live = set(state.ids())
        out: list[RowPlan] = []
        for i in range(n):
            given = fixed[i]
            matched = tuple(next(gated)) if given is None else tuple(m for m in given if m.forget_set_id in live)
            vectors = state.vectors_by_layer(matched, boost=boosts[i]) if (flags[i] and matched) else None
            out.append(RowPlan(matched, vectors or None, boosts[i]))
        return out

    def render(self, prompt: Prompt) -> str:
        """A chat prompt in the model's template; a plain string is used as is."""
        return prompt if isinstance(prompt, str) else chat_prompt(self.tokenizer, prompt)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams = SamplingParams(), *,
                 steer: bool | Sequence[bool] = True, state: GateState | None = None,
                 plans: Sequence[RowPlan] | None = None) -> list[Generation]:
        """Generate for a batch; each row gets its own gate decision and steering vector (or none).

        Args:
            prompts: raw strings (used verbatim) or chat message lists (rendered with the template).
            params: decoding parameters shared by the batch.
            steer: False (or False for a row) gives the unsteered base model for that row.
            state: gate snapshot to use (default: the current one, read once).
            plans: decisions made already (``plan``); then ``steer`` and ``state`` are not used.
        """
        rows = list(plans) if plans is not None else self.plan(prompts, state, steer=steer)
        ids = [self.tokenizer.encode(self.render(p), add_special_tokens=False) for p in prompts]
        eos = eos_ids(self.tokenizer)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        outs = run_batch(self.model, self.hooks, ids, batch_plans(rows), params, self.tokenizer, eos, pad)
        return [Generation(o.text, o.finish_reason or "length", len(i), len(o.ids), tuple(o.ids), r.steered,
                           r.matched, boost=r.boost if r.steered else 0.0)
                for o, i, r in zip(outs, ids, rows, strict=True)]


def eos_ids(tokenizer: Any) -> set[int]:
    """Token ids that end an answer: EOS, and padding when the tokenizer pads with its own id."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids
