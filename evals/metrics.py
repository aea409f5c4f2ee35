"""Evaluation metrics (METHOD.md "Evaluation vocabulary"), each tested on hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from steering.checks import (
    contains_answer,
    gives_answer,
    is_collapsed,
    normalize,
    rouge_l_recall,
    tokens,
)

__all__ = ["contains_answer", "gives_answer", "is_collapsed", "kl_divergence", "mean_kl", "normalize",
           "rate", "relative_drop", "rouge_l_recall", "tokens"]


def rate(values: Sequence[bool] | Sequence[float]) -> float | None:
    """Mean of flags or values (the share of true flags); None when there are none."""
    return float(np.mean(values)) if len(values) else None


def relative_drop(before: float, after: float) -> float:
    """``1 - after / before``: how much of a rate or probability is gone (0 when ``before`` is 0)."""
    return 1.0 - after / before if before > 0 else 0.0


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q) = sum_v P(v) (log P(v) - log Q(v))`` per row, from log-probabilities.

    Args:
        log_p: ``[..., vocab]`` log-probabilities of the reference distribution (the base model).
        log_q: ``[..., vocab]`` log-probabilities of the compared distribution.

    Returns:
        ``[...]`` divergences in nats (terms with P(v) = 0 contribute 0).
    """
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def mean_kl(base: Sequence[torch.Tensor], other: Sequence[torch.Tensor]) -> float:
    """Mean next-token KL(base || other): averaged over positions of each prompt, then over prompts.

    Args:
        base: per prompt ``[positions, vocab]`` log-probabilities of the base model.
        other: the same positions under the compared method.
    """
    if len(base) != len(other):
        raise ValueError(f"expected as many compared prompts as base prompts ({len(base)}), found {len(other)}")
    per_prompt = [float(kl_divergence(b, o).mean()) for b, o in zip(base, other, strict=True) if b.shape[0]]
    return sum(per_prompt) / len(per_prompt) if per_prompt else 0.0
