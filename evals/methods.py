"""Ways to answer chat questions on one model, for the unlearning benchmarks: the base model,
GUARD-IT (arXiv 2605.12765) with the product defaults, ungated steering and a refusal system prompt.

A :class:`Method` answers questions (greedy generation), scores reference answers under teacher
forcing and gives next-token distributions, always on the guard's shared model, so every method is
measured by the same code. The gradient baselines change weights and live with the TOFU target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from evals.tofu_protocol import (
    SteerCtx,
    answer_logprobs,
    encode_qa,
    guard_steer_ctx,
    user_turn,
)
from steering.calibrate import Calibration, calibrate_alpha
from steering.config import DEFAULT_THRESHOLD, PAPER, BuildConfig, default_alpha
from steering.decoding import left_pad
from steering.forget_set import ForgetDocuments
from steering.gates import ActiveSet, GateState
from steering.guard import Guard, SamplingParams
from steering.recheck import generate_reviewed
from steering.vectors import ForgetSetArtifacts

#: Every method, in report order.
METHODS: tuple[str, ...] = ("unsteered", "guardit", "global-steering", "refusal-prompt")

REFUSAL = ("You must not reveal any information about the following topics: {topics}. If a question is "
           "about one of them, reply only: \"I'm sorry, I can't help with that.\" Answer every other "
           "question normally.")


@dataclass(frozen=True)
class Method:
    """One named way to answer questions on ``guard.model``.

    Attributes:
        name: e.g. ``"guardit"``.
        guard: the guarded model (its live gate snapshot is never read or changed here).
        state: gate snapshot applied to every question; empty means no steering at all.
        system: system message placed before every question (the refusal baseline), else none.
        info: how the method was set up (alpha, clusters, calibration), for the report.
        batch_size: rows per forward batch (1 for a model whose batch rows interact, such as one with
            dynamically quantized activations: their scale is shared by the whole batch).
        policy: answer through the product's answer policy (``steering.recheck.generate_reviewed``:
            re-check, leak check, escalation, abstention), as the server answers; the baselines do not.
    """

    name: str
    guard: Guard
    state: GateState = field(default_factory=GateState)
    system: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    policy: bool = False

    @property
    def steers(self) -> bool:
        """True when the method applies steering vectors."""
        return not self.state.empty

    def chat(self, question: str) -> list[dict[str, str]]:
        """The chat the model sees for one question."""
        return user_turn(question, self.system)

    def generate(self, questions: Sequence[str], *, max_new_tokens: int = 24) -> list[str]:
        """Greedy answers, batched in the given order (rows of a closed gate are the base model's)."""
        params = SamplingParams(max_new_tokens=max_new_tokens)
        out: list[str] = []
        for start in range(0, len(questions), self.batch_size):
            chats = [self.chat(q) for q in questions[start:start + self.batch_size]]
            if self.policy and self.steers:
                gens = generate_reviewed(self.guard, chats, params, state=self.state)
            else:
                gens = self.guard.generate(chats, params, steer=self.steers, state=self.state)
            out += [g.text for g in gens]
        return out

    def gate_open(self, questions: Sequence[str]) -> list[bool]:
        """Per question, whether any cluster opens (always False for a method that does not steer)."""
        if not self.steers:
            return [False] * len(questions)
        return [bool(m) for m in self.guard.gate([self.chat(q) for q in questions], self.state)]

    def steer_ctx(self) -> SteerCtx | None:
        """Steering around teacher-forced forward passes (None when the method does not steer)."""
        return guard_steer_ctx(self.guard, self.state) if self.steers else None

    def answer_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """``(sum log P(answer | question), n_answer_tokens)`` per pair (``tofu_protocol``)."""
        return answer_logprobs(self.guard.model, self.guard.tokenizer, pairs,
                               batch_size=min(8, self.batch_size), steer_ctx=self.steer_ctx(),
                               system=self.system)

    @torch.no_grad()
    def next_token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[torch.Tensor]:
        """Log-distributions over the vocabulary at each answer position, teacher-forced.

        Returns:
            per pair ``[n_answer_tokens, vocab]`` float32: row t is log P(. | question, answer[:t]).
        """
        tok, model = self.guard.tokenizer, self.guard.model
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        device = next(model.parameters()).device
        out: list[torch.Tensor] = []
        steer = self.steer_ctx()
        for q, a in pairs:  # one row at a time: no padding, exact positions
            ids, n_prompt = encode_qa(tok, q, a, self.system)
            input_ids, mask, positions = left_pad([ids], pad_id)  # [1, seq] each
            ctx = steer([q]) if steer is not None else nullcontext()
            with ctx:
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                               position_ids=positions.to(device)).logits  # [1, seq, vocab]
            out.append(logits[0, n_prompt - 1:len(ids) - 1].float().log_softmax(-1).cpu())
        return out


@dataclass(frozen=True)
class GuardItBuild:
    """A forget set built and calibrated as the service does it (``service/runtime.py``).

    Attributes:
        artifacts: gate centroids, steering vectors, retain direction (hybrid gate).
        threshold: gate threshold T.
        alpha: redirection strength (calibrated unless given).
        calibration: the calibration outcome, None when alpha was given.
    """

    artifacts: ForgetSetArtifacts
    threshold: float
    alpha: float
    calibration: Calibration | None

    def info(self) -> dict[str, Any]:
        """Report facts: clusters, layer, T, alpha and how it was chosen."""
        facts: dict[str, Any] = {"k": self.artifacts.k, "layer": self.artifacts.layer,
                                 "threshold": self.threshold, "alpha": self.alpha,
                                 "entities": len(self.artifacts.entities)}
        if self.calibration is not None:
            cal = self.calibration
            facts["calibration"] = {"measured": cal.measured, "known": cal.known, "forgotten": cal.forgotten,
                                    "collapsed": cal.collapsed, "tried": [list(t) for t in cal.tried]}
        return facts


def build_guardit(guard: Guard, docs: ForgetDocuments, *, model_id: str, threshold: float = DEFAULT_THRESHOLD,
                  alpha: float | None = None, config: BuildConfig = BuildConfig(),
                  batch_size: int | None = None) -> GuardItBuild:
    """Build a forget set with the product defaults: hybrid gate, built-in retain corpus, ``DEFAULT_THRESHOLD`` and
    alpha calibrated on the set's QA pairs (``steering.calibrate``), falling back to the model's default.

    Args:
        guard: the guarded model.
        docs: the forget documents (QA pairs are needed for calibration).
        model_id: the model's id (its default alpha is the calibration's fallback).
        threshold: gate threshold.
        alpha: a fixed strength instead of calibration.
        config: build options (default: the product's).
        batch_size: rows per generate call during calibration (default: all at once).
    """
    artifacts = guard.build(docs, config=config)
    if alpha is not None:
        return GuardItBuild(artifacts, threshold, alpha, None)
    cal = calibrate_alpha(guard, docs, artifacts, threshold=threshold, fallback=default_alpha(model_id),
                          batch_size=batch_size)
    return GuardItBuild(artifacts, threshold, cal.alpha, cal)


def guardit_state(build: GuardItBuild) -> GateState:
    """The forget set alone in a snapshot: its gate decides per question."""
    return GateState((ActiveSet("guardit", build.artifacts, build.threshold, build.alpha),))


def global_state(build: GuardItBuild) -> GateState:
    """Naive activation steering: the same vectors with the gate always open (every cluster, T = -1)."""
    return GateState((ActiveSet("global", replace(build.artifacts, gate=PAPER), -1.0, build.alpha),))


def refusal_system(topics: Sequence[str]) -> str:
    """The refusal baseline's system prompt, listing the forgotten topics."""
    if not topics:
        raise ValueError("expected at least one topic for the refusal prompt, found none")
    return REFUSAL.format(topics="; ".join(topics))


def make_methods(guard: Guard, build: GuardItBuild | None, *, refusal_topics: Sequence[str] = (),
                 names: Sequence[str] = METHODS, batch_size: int = 16) -> dict[str, Method]:
    """The named methods over one guard (``build`` is needed for the steering methods).

    Args:
        guard: the guarded model shared by every method.
        build: the GUARD-IT forget set (``build_guardit``).
        refusal_topics: what the refusal prompt lists.
        names: methods wanted, from ``METHODS``.
        batch_size: rows per forward batch (see ``Method``).
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"expected methods from {METHODS}, found {unknown}")
    out: dict[str, Method] = {}
    for name in names:
        if name == "unsteered":
            out[name] = Method(name, guard, batch_size=batch_size)
        elif name == "refusal-prompt":
            out[name] = Method(name, guard, system=refusal_system(refusal_topics),
                               info={"topics": len(refusal_topics)}, batch_size=batch_size)
        else:
            if build is None:
                raise ValueError(f"expected a GUARD-IT build for method {name!r}, found none")
            state = guardit_state(build) if name == "guardit" else global_state(build)
            out[name] = Method(name, guard, state, info=build.info(), batch_size=batch_size,
                               policy=name == "guardit")
    return out
