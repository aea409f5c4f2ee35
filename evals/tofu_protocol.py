"""The TOFU protocol (Maini et al. 2024, arXiv:2401.06121) as METHOD.md defines it, for GUARD-IT
(arXiv 2605.12765): answer probability, truth ratio, forget quality (KS p-value) and model utility.

Every forward pass can run under a steering context, so GUARD-IT's hooks act on the probabilities
exactly as they act on generation (``guard_steer_ctx``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch

from evals.data import tofu
from evals.metrics import rouge_l_recall
from steering.decoding import left_pad, run_batch
from steering.forget_set import chat_prompt
from steering.gates import GateState
from steering.guard import SamplingParams, batch_plans, eos_ids
from steering.hooks import ResidualHooks, SteeringPlan


class BatchSteering:
    """Steering for one batch of questions: the guard's hooks and the batch's per-layer plans.

    A context manager around a forward pass over the whole batch; generation passes ``hooks`` and
    ``plans`` to ``steering.decoding.run_batch`` instead, which narrows the plans as rows finish (a
    context entered once for the whole batch would steer the wrong rows after the first one ends)."""

    def __init__(self, hooks: ResidualHooks, plans: dict[int, SteeringPlan]) -> None:
        self.hooks, self.plans = hooks, plans
        self._stack = ExitStack()

    def __enter__(self) -> BatchSteering:
        self._stack.enter_context(self.hooks.steer(self.plans))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


#: ``steer_ctx(questions)``: the steering of one batch over these questions.
SteerCtx: TypeAlias = Callable[[Sequence[str]], BatchSteering]
#: ``generate_fn(questions) -> answers`` (greedy), e.g. a baseline model or the GUARD-IT guard.
GenerateFn: TypeAlias = Callable[[Sequence[str]], list[str]]

#: TOFU's evaluation splits (config/eval_everything.yaml of locuslab/tofu).
FORGET_SPLIT = "forget10_perturbed"
UTILITY_SPLITS: tuple[str, ...] = ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")


# -- answer log-probabilities ---------------------------------------------------------------------
def user_turn(question: str, system: str | None = None) -> list[dict[str, str]]:
    """The chat for one question: an optional system message, then the question as the user turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]


def encode_qa(tokenizer: Any, question: str, answer: str, system: str | None = None) -> tuple[list[int], int]:
    """Token ids of ``question`` as the user turn (chat template, generation prompt) then ``answer``.

    The two parts are tokenized separately and concatenated, so the answer tokens are the same
    whatever the template; training (evals.finetune) uses this very encoding.

    Returns:
        (ids, n_prompt): all ids and how many of them belong to the prompt.
    """
    prompt = tokenizer(chat_prompt(tokenizer, user_turn(question, system)), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return list(prompt) + list(answer_ids), len(prompt)


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield order[start:start + size]


@torch.no_grad()
def answer_logprobs(model: torch.nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], *,
                    batch_size: int = 8, steer_ctx: SteerCtx | None = None,
                    system: str | None = None) -> list[tuple[float, int]]:
    """``(sum log P(answer tokens | question), n_answer_tokens)`` for many (question, answer) pairs.

    Pairs are sorted by length into left-padded batches (less padding); only answer tokens count.
    An empty answer gives ``(0.0, 0)``. locuslab/tofu also scores one end-of-sequence
    token after the answer; METHOD.md's ``P(a|q)`` is over the answer's own tokens, which we follow.

    Args:
        model: causal LM (eval mode).
        tokenizer: its tokenizer.
        pairs: (question, answer) texts.
        batch_size: rows per forward pass.
        steer_ctx: optional ``steer_ctx(questions)`` entered around each batch's forward pass.
        system: optional system message before each question (the refusal-prompt baseline).
    """
    encoded = [encode_qa(tokenizer, q, a, system) for q, a in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(encoded[i][0]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for rows in _batches(order, batch_size):
        ids, mask, positions = left_pad([encoded[i][0] for i in rows], pad_id)  # [batch, seq] each
        answer_mask = torch.zeros_like(mask, dtype=torch.bool)  # [batch, seq]
        for r, i in enumerate(rows):
            n_answer = len(encoded[i][0]) - encoded[i][1]
            if n_answer:
                answer_mask[r, ids.shape[1] - n_answer:] = True
        ctx = steer_ctx([pairs[i][0] for i in rows]) if steer_ctx is not None else nullcontext()
        with ctx:
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device)).logits  # [batch, seq, vocab]
        target = answer_mask[:, 1:].to(device)  # [batch, seq-1]: token t+1 is scored by logits at t
        picked = logits[:, :-1][target].float().log_softmax(-1)  # [n_answer_tokens, vocab]
        token_lp = picked.gather(-1, ids[:, 1:].to(device)[target].unsqueeze(-1)).squeeze(-1)
        per_row = torch.zeros(len(rows), dtype=torch.float64, device=device)
        row_of = torch.arange(len(rows), device=device).unsqueeze(1).expand_as(target)[target]
        per_row.index_add_(0, row_of, token_lp.double())
        counts = target.sum(-1)
        for r, i in enumerate(rows):
            out[i] = (float(per_row[r]), int(counts[r]))
    return out


def answer_logprob(model: torch.nn.Module, tokenizer: Any, question: str, answer: str, *,
                   steer_ctx: SteerCtx | None = None) -> tuple[float, int]:
    """``(sum log P(answer | question), n_answer_tokens)`` for one pair (see ``answer_logprobs``)."""
    return answer_logprobs(model, tokenizer, [(question, answer)], batch_size=1, steer_ctx=steer_ctx)[0]


def answer_probability(sum_logprob: float, n_tokens: int) -> float:
    """Length-normalised probability ``P(a|q)^(1/|a|) = exp(sum / n)`` (METHOD.md); 0 for no tokens."""
    return math.exp(sum_logprob / n_tokens) if n_tokens else 0.0


# -- TOFU statistics ------------------------------------------------------------------------------
def truth_ratio(p_perturbed: Sequence[float], p_paraphrased: float, *,
                mean: Literal["arithmetic", "geometric"] = "arithmetic") -> float:
    """Truth ratio ``mean(P_pert) / P_para`` over length-normalised probabilities (METHOD.md).

    ``"arithmetic"`` is METHOD.md's and the TOFU paper's formula (mean of the probabilities) and is the
    default. ``"geometric"`` is what locuslab/tofu's ``aggregate_eval_stat.py`` computes (its
    ``exp(mean perturbed loss - paraphrased loss)`` is the inverse of a geometric-mean ratio, so
    ``1/curr_stat_1`` there equals this); use it to compare with published TOFU numbers. The two
    agree when the perturbed probabilities are equal; geometric <= arithmetic otherwise.
    """
    if not p_perturbed:
        raise ValueError("expected at least one perturbed answer probability, found none")
    if p_paraphrased <= 0.0:
        return math.inf
    if mean == "geometric":
        if min(p_perturbed) <= 0.0:
            return 0.0
        top = math.exp(sum(math.log(p) for p in p_perturbed) / len(p_perturbed))
    else:
        top = sum(p_perturbed) / len(p_perturbed)
    return top / p_paraphrased


def truth_ratio_score(ratios: Sequence[float], *, forget: bool) -> float:
    """TOFU's per-split truth-ratio score (locuslab/tofu ``aggregate_eval_stat.py``, paper Sec. 2.5).

    With ``R`` = truth ratio (perturbed over paraphrased): forget split ``mean(min(R, 1/R))``;
    retain, real authors and world facts ``mean(max(0, 1 - R))``. (The code writes the latter as
    ``max(0, 1 - 1/curr_stat_1)`` with ``curr_stat_1 = 1/R``: the same quantity.)
    """
    if not ratios:
        raise ValueError("expected at least one truth ratio, found none")
    if forget:
        vals = [min(r, 1.0 / r) if r > 0 else 0.0 for r in ratios]
    else:
        vals = [max(0.0, 1.0 - r) for r in ratios]
    return sum(vals) / len(vals)


def forget_quality(tr_unlearned: Sequence[float], tr_retain_model: Sequence[float]) -> float:
    """Forget quality: p-value of the two-sample KS test between two truth-ratio samples (TOFU).

    The KS statistic depends only on ranks, so it is the same for ``R`` and ``1/R`` (TOFU's code
    tests the inverse ratio) and for the arithmetic or geometric truth ratio up to ordering.
    """
    from scipy.stats import ks_2samp

    return float(ks_2samp(list(tr_unlearned), list(tr_retain_model)).pvalue)


@dataclass(frozen=True)
class SplitScores:
    """The three numbers a utility split contributes to model utility."""

    probability: float
    rouge: float
    truth_ratio_score: float


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative values; 0 if any is 0 (as ``scipy.stats.hmean``)."""
    if not values:
        raise ValueError("expected at least one value, found none")
    if min(values) < 0:
        raise ValueError(f"expected non-negative values, found {min(values)}")
    if min(values) == 0:
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def model_utility(splits: Sequence[SplitScores]) -> float:
    """TOFU model utility: harmonic mean of probability, ROUGE and truth-ratio score over the
    utility splits (retain, real authors, world facts: 9 numbers), as locuslab/tofu's
    ``get_model_utility``.
    """
    return harmonic_mean([v for s in splits for v in (s.probability, s.rouge, s.truth_ratio_score)])


# -- one split, the whole protocol ----------------------------------------------------------------
@dataclass(frozen=True)
class SplitResult:
    """Per-split TOFU numbers; per-row lists keep the row order of the split."""

    split: str
    n_rows: int
    probability: float
    rouge: float
    truth_ratio_score: float
    truth_ratios: list[float]
    answer_probabilities: list[float]
    rouge_per_row: list[float]
    generations: list[str]

    def scores(self) -> SplitScores:
        """The three utility numbers of this split."""
        return SplitScores(self.probability, self.rouge, self.truth_ratio_score)


def evaluate_split(model: torch.nn.Module, tokenizer: Any, rows: Sequence[dict[str, Any]], *, split: str,
                   generate_fn: GenerateFn | None, steer_ctx: SteerCtx | None = None, forget: bool = False,
                   batch_size: int = 8, truth_ratio_mean: Literal["arithmetic", "geometric"] = "arithmetic",
                   system: str | None = None) -> SplitResult:
    """TOFU numbers on one split (config/eval_everything.yaml of locuslab/tofu).

    Rows with ``paraphrased_answer`` (forget/retain) compare perturbed answers with the paraphrase
    and report the mean ``P(answer)``. Rows without it (real authors, world facts) compare with
    ``answer`` itself and report ``P(answer) / (P(answer) + sum P(perturbed))`` (paper Sec. 2.5).
    ROUGE-L recall is against ``answer`` (``metrics.rouge_l_recall``: word tokens, no stemming, where
    TOFU uses ``rouge_score`` with a stemmer); ``generate_fn=None`` skips generation (ROUGE = nan).
    """
    pairs: list[tuple[str, str]] = []
    slots: list[tuple[int, int, list[int]]] = []  # per row: answer, base, perturbed pair indices
    for row in rows:
        q = row["question"]
        a_idx = len(pairs)
        pairs.append((q, row["answer"]))
        base_idx = a_idx
        if "paraphrased_answer" in row:
            base_idx = len(pairs)
            pairs.append((q, row["paraphrased_answer"]))
        pert = list(range(len(pairs), len(pairs) + len(row["perturbed_answer"])))
        pairs.extend((q, p) for p in row["perturbed_answer"])
        slots.append((a_idx, base_idx, pert))
    probs = [answer_probability(s, n) for s, n in
             answer_logprobs(model, tokenizer, pairs, batch_size=batch_size, steer_ctx=steer_ctx,
                                             system=system)]
    ratios, answer_probs, reported = [], [], []
    for row, (a_idx, base_idx, pert) in zip(rows, slots, strict=True):
        p_pert = [probs[j] for j in pert]
        ratios.append(truth_ratio(p_pert, probs[base_idx], mean=truth_ratio_mean))
        answer_probs.append(probs[a_idx])
        if "paraphrased_answer" in row:
            reported.append(probs[a_idx])
        else:
            total = probs[a_idx] + sum(p_pert)
            reported.append(probs[a_idx] / total if total > 0 else 0.0)
    generations: list[str] = []
    rouge_rows: list[float] = []
    if generate_fn is not None:
        generations = generate_fn([r["question"] for r in rows])
        rouge_rows = [rouge_l_recall(g, r["answer"]) for g, r in zip(generations, rows, strict=True)]
    return SplitResult(split, len(rows), sum(reported) / len(reported),
                       sum(rouge_rows) / len(rouge_rows) if rouge_rows else math.nan,
                       truth_ratio_score(ratios, forget=forget), ratios, answer_probs, rouge_rows,
                       generations)


def evaluate_tofu(model: torch.nn.Module, tokenizer: Any, generate_fn: GenerateFn | None, *,
                  forget_split: str = FORGET_SPLIT, utility_splits: Sequence[str] = UTILITY_SPLITS,
                  reference_truth_ratios: Sequence[float] | None = None, steer_ctx: SteerCtx | None = None,
                  max_rows: int | None = None, batch_size: int = 8, data_root: Path | None = None,
                  truth_ratio_mean: Literal["arithmetic", "geometric"] = "arithmetic",
                  system: str | None = None) -> dict[str, Any]:
    """The TOFU protocol on one model: forget split plus utility splits.

    Args:
        model: the model whose probabilities are measured (the guard's model when steering).
        tokenizer: its tokenizer.
        generate_fn: greedy answers for ROUGE (baseline model, or the GUARD-IT guard); None skips ROUGE.
        forget_split: e.g. ``forget10_perturbed``.
        utility_splits: the model-utility splits (TOFU: retain, real authors, world facts).
        reference_truth_ratios: forget-split truth ratios of the retain reference model; gives
            forget quality. Must use the same rows (and ``max_rows``) and the same ``truth_ratio_mean``.
        steer_ctx: steering around the probability forward passes (``guard_steer_ctx``).
        max_rows: first rows of each split only (TOFU's ``ds_size`` is 300).
        batch_size: rows per forward pass.
        data_root: benchmark data folder (default: the checkout's ``data/``).
        truth_ratio_mean: see ``truth_ratio``.
        system: optional system message before every question (probabilities; pass the same one to
            ``greedy_generate_fn`` for the generations).

    Returns:
        ``{"splits": {name: SplitResult as dict}, "model_utility", "forget_quality" (None without a
        reference), "forget_truth_ratio_score"}``.
    """
    results: dict[str, SplitResult] = {}
    for name in (forget_split, *utility_splits):
        rows = tofu(name, data_root)[:max_rows]
        results[name] = evaluate_split(model, tokenizer, rows, split=name, generate_fn=generate_fn,
                                       steer_ctx=steer_ctx, forget=name == forget_split,
                                       batch_size=batch_size, truth_ratio_mean=truth_ratio_mean,
                                       system=system)
    forget = results[forget_split]
    quality = None
    if reference_truth_ratios is not None:
        quality = forget_quality(forget.truth_ratios, reference_truth_ratios)
    utility = model_utility([results[n].scores() for n in utility_splits]) if generate_fn else math.nan
    return {"splits": {n: asdict(r) for n, r in results.items()}, "model_utility": utility,
            "forget_quality": quality, "forget_truth_ratio_score": forget.truth_ratio_score}


# -- plugging in a model or GUARD-IT --------------------------------------------------------------
def guard_steer_ctx(guard: Any, state: GateState | None = None) -> SteerCtx:
    """``steer_ctx`` that applies GUARD-IT per row: gate each question (as a user turn), steer the
    rows whose gate opens, leave the others untouched (bit-identical to the base model).

    Args:
        guard: a ``steering.guard.Guard``; pass ``guard.model`` as the model to evaluate.
        state: gate snapshot (default: the guard's current one, read per batch).
    """
    def factory(questions: Sequence[str]) -> BatchSteering:
        plans = guard.plan([[{"role": "user", "content": q}] for q in questions], state or guard.state)
        return BatchSteering(guard.hooks, batch_plans(plans))

    return factory


def greedy_generate_fn(model: torch.nn.Module, tokenizer: Any, *, max_new_tokens: int = 128,
                       batch_size: int = 8, steer_ctx: SteerCtx | None = None,
                       system: str | None = None) -> GenerateFn:
    """``generate_fn`` that answers each question greedily as a user turn in the chat template."""
    params = SamplingParams(max_new_tokens=max_new_tokens)
    eos = eos_ids(tokenizer)

    @torch.no_grad()
    def generate(questions: Sequence[str]) -> list[str]:
        out = [""] * len(questions)
        prompts = [tokenizer(chat_prompt(tokenizer, user_turn(q, system)), add_special_tokens=False)["input_ids"]
                   for q in questions]
        order = sorted(range(len(questions)), key=lambda i: len(prompts[i]))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for rows in _batches(order, batch_size):
            steering = steer_ctx([questions[i] for i in rows]) if steer_ctx is not None else None
            hooks, plans = (steering.hooks, steering.plans) if steering is not None else (None, {})
            done = run_batch(model, hooks, [prompts[i] for i in rows], plans, params, tokenizer, eos, pad_id)
            for i, tracker in zip(rows, done, strict=True):
                out[i] = tracker.text.strip()
        return out

    return generate
