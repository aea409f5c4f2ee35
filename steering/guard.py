"""GUARD-IT end to end on one frozen model (arXiv 2605.12765): build, gate, steer, generate.

``Guard`` owns the hooks of one model (registered once) and an immutable ``GateState`` snapshot
that is swapped atomically when forget sets are activated or revoked.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steering.config import BuildConfig, check_alpha, check_layer, check_threshold
from steering.errors import ConfigError
from steering.layers import d_model, n_layers
from steering.forget_set import ForgetDocuments, chat_prompt
from steering.gates import ActiveSet, GateMatch, GateState, build_plans
from steering.hooks import ResidualHooks
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


def gate_texts(prompt: Prompt) -> list[str]:
    """What the gate embeds for a prompt: the text, or for a chat the latest user turn and the whole chat."""
    if isinstance(prompt, str):
        return [prompt]
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    texts = [users[-1]] if users else []
    whole = "\n".join(m["content"] for m in prompt)
    if whole not in texts:
        texts.append(whole)
    return texts


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
        """K(x) for each prompt against ``state`` (default: the current snapshot)."""
        state = state or self._state
        if state.empty:
            return [[] for _ in prompts]
        groups: list[list[int]] = []
        texts: list[str] = []
        for prompt in prompts:
            rows = gate_texts(prompt)
            groups.append(list(range(len(texts), len(texts) + len(rows))))
            texts.extend(rows)
        return state.match_groups(embed(self.embedder, texts), groups, texts)

    def render(self, prompt: Prompt) -> str:
        """A chat prompt in the model's template; a plain string is used as is."""
        return prompt if isinstance(prompt, str) else chat_prompt(self.tokenizer, prompt)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams = SamplingParams(), *,
                 steer: bool | Sequence[bool] = True, state: GateState | None = None) -> list[Generation]:
        """Generate for a batch; each row gets its own gate decision and steering vector (or none).

        Args:
            prompts: raw strings (used verbatim) or chat message lists (rendered with the template).
            params: decoding parameters shared by the batch.
            steer: False (or False for a row) gives the unsteered base model for that row.
            state: gate snapshot to use (default: the current one, read once).
        """
        state = state or self._state
        flags = [steer] * len(prompts) if isinstance(steer, bool) else list(steer)
        matches = self.gate(prompts, state)
        vectors = [state.vectors_by_layer(m) if (flag and m) else None for m, flag in zip(matches, flags, strict=True)]
        plans = build_plans(vectors, len(prompts))
        texts = [self.render(p) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        kwargs = _generate_kwargs(self.tokenizer, params)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with self.hooks.steer(plans):
            out = self.model.generate(input_ids=enc["input_ids"].to(device),
                                      attention_mask=enc["attention_mask"].to(device), **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        results = []
        for row in range(len(prompts)):
            new = out[row, prompt_len:].tolist()
            results.append(self._finish(new, int(enc["attention_mask"][row].sum()), params,
                                        vectors[row] is not None, matches[row]))
        return results

    def _finish(self, new: list[int], prompt_tokens: int, params: SamplingParams, steered: bool,
                matched: list[GateMatch]) -> Generation:
        eos = _eos_ids(self.tokenizer)
        finish = "length"
        ids: list[int] = []
        for tok in new:
            if tok in eos:
                finish = "stop"
                break
            ids.append(tok)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in params.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        return Generation(text, finish, prompt_tokens, len(ids), tuple(ids), steered, tuple(matched))


def _eos_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids


def _generate_kwargs(tokenizer: Any, params: SamplingParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if params.temperature > 0:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if params.stop:
        kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
    if params.ignore_eos:
        kwargs["min_new_tokens"] = params.max_new_tokens
    return kwargs

