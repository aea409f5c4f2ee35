"""Pooled residual-stream activations at one layer (METHOD.md steps 3-5).

Pooling excludes padding, a chat template's system prompt, and the first token of every text: the
first position is an attention sink whose norm is several times the others' (772 vs ~128 at layer 7
of SmolLM2-135M), and would dominate both the PSVs and the mean norm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steering.forget_set import RenderedText
from steering.hooks import ResidualHooks, StopForward


@dataclass(frozen=True)
class PooledActivations:
    """Per-text mean of the layer output over its pooled tokens.

    Attributes:
        pooled: ``[n_texts, d_model]`` float32.
        token_norm_sum: sum of ||h|| over every pooled token.
        n_tokens: number of pooled tokens.
    """

    pooled: torch.Tensor
    token_norm_sum: float
    n_tokens: int


def _content_mask(encoding: Any, texts: Sequence[RenderedText], attention: torch.Tensor) -> torch.Tensor:
    """``[batch, seq]`` bool: real tokens that start inside a content span, minus the first token."""
    mask = attention.bool().clone()
    starts = encoding["offset_mapping"][:, :, 0]  # [batch, seq] char offset of each token
    for row, item in enumerate(texts):
        positions = mask[row].nonzero().flatten()
        if positions.numel() == 0:
            continue
        mask[row, positions[0]] = False  # attention sink
        inside = torch.zeros_like(mask[row])
        for lo, hi in item.spans:
            inside |= (starts[row] >= lo) & (starts[row] < hi)
        mask[row] &= inside
    return mask


@torch.no_grad()
def pool_activations(
    model: torch.nn.Module,
    tokenizer: Any,
    hooks: ResidualHooks,
    layer: int,
    texts: Sequence[RenderedText],
    *,
    batch_size: int = 8,
    max_tokens: int = 512,
    progress: Callable[[int], None] | None = None,
) -> PooledActivations:
    """Run the frozen LLM over ``texts`` up to ``layer`` and mean-pool that layer's output.

    Args:
        model: the causal LM.
        tokenizer: its tokenizer (fast, for offset mapping).
        hooks: the model's hooks (the same site is read here and written when steering).
        layer: decoder block index.
        texts: rendered texts.
        batch_size: texts per forward pass.
        max_tokens: truncation length.
        progress: called with the number of texts finished after each batch.

    Returns:
        Pooled vectors and the token-norm statistics for mu (Eq. 7).
    """
    device = next(model.parameters()).device
    # Batches of similar length waste little compute on padding; rows go back to input order at the end.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i].text))
    pooled: list[torch.Tensor] = []
    norm_sum, n_tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = [texts[i] for i in order[start : start + batch_size]]
        enc = tokenizer(
            [t.text for t in chunk],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_tokens,
            add_special_tokens=False,
            return_offsets_mapping=True,
        )
        attention = enc["attention_mask"]  # [batch, seq]
        mask = _content_mask(enc, chunk, attention)
        # Left padding: number positions from each text's first real token, as generate() does,
        # so a text pools to the same vector alone or in a batch (absolute-position models too).
        positions = (attention.long().cumsum(dim=1) - 1).clamp_min(0)  # [batch, seq]
        with hooks.capture(layer, stop=True) as cap:
            try:
                model(input_ids=enc["input_ids"].to(device), attention_mask=attention.to(device),
                      position_ids=positions.to(device), use_cache=False)
            except StopForward:
                pass
        hidden = cap.output  # [batch, seq, d_model] float32
        if hidden is None:
            raise RuntimeError("capture hook did not fire")  # internal invariant
        hidden = hidden.cpu()
        weights = mask.float()  # [batch, seq]
        counts = weights.sum(dim=1, keepdim=True).clamp_min(1.0)
        pooled.append((hidden * weights.unsqueeze(-1)).sum(dim=1) / counts)
        norms = hidden.norm(dim=-1)  # [batch, seq]
        norm_sum += float((norms * weights).sum())
        n_tokens += int(weights.sum())
        if progress is not None:
            progress(len(chunk))
    stacked = torch.cat(pooled)  # [n_texts, d_model] in length order
    result = torch.empty_like(stacked)
    result[torch.tensor(order, dtype=torch.long)] = stacked
    return PooledActivations(result, norm_sum, n_tokens)
