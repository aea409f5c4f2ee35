"""The one decode loop's pieces (GUARD-IT, arXiv 2605.12765): a KV-cached batch whose rows can join
and leave at token boundaries, per-row sampling, incremental text with stop strings, and
``run_batch``, a static batch built from the same pieces (the library's ``Guard.generate``; the
serving engine drives them with continuous batching).

Rows are left-padded. Joining pads the shorter cache on the left with masked zeros; leaving selects
rows and trims columns no row attends to. Position ids are per row (real tokens so far), as
``model.generate`` computes them from the attention mask, so a row's tokens do not depend on its
batch mates' padding.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from steering.hooks import ResidualHooks, SteeringPlan

if TYPE_CHECKING:
    from steering.guard import SamplingParams


@dataclass
class KVBatch:
    """The running batch's model state.

    Attributes:
        cache: per layer keys/values ``[batch, heads, seq, head_dim]``.
        mask: ``[batch, seq]`` 1 where a cached position is a real token.
        next_pos: ``[batch]`` position id of each row's next input token.
        last: ``[batch]`` each row's last sampled token (the next input).
    """

    cache: DynamicCache
    mask: torch.Tensor
    next_pos: torch.Tensor
    last: torch.Tensor

    @property
    def size(self) -> int:
        """Rows in the batch."""
        return int(self.mask.shape[0])

    @property
    def mergeable(self) -> bool:
        """Rows can join (and columns be trimmed) only when every layer is a plain growing cache."""
        return all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def _kv(self) -> list[tuple[DynamicLayer, torch.Tensor, torch.Tensor]]:
        """(layer, keys, values) of every filled layer (call only when ``mergeable``)."""
        out = []
        for layer in self.cache.layers:
            if isinstance(layer, DynamicLayer) and layer.keys is not None and layer.values is not None:
                out.append((layer, layer.keys, layer.values))
        return out

    def _pad_left(self, n: int) -> None:
        if n <= 0:
            return
        for layer, keys, values in self._kv():
            layer.keys, layer.values = F.pad(keys, (0, 0, n, 0)), F.pad(values, (0, 0, n, 0))
        self.mask = F.pad(self.mask, (n, 0))

    def join(self, other: KVBatch) -> None:
        """Append ``other``'s rows (in place); the shorter cache is left-padded with masked zeros."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self._pad_left(width - self.mask.shape[1])
        other._pad_left(width - other.mask.shape[1])
        for (layer, keys, values), (_, more_keys, more_values) in zip(self._kv(), other._kv(), strict=True):
            layer.keys, layer.values = torch.cat([keys, more_keys]), torch.cat([values, more_values])
        self.mask = torch.cat([self.mask, other.mask])
        self.next_pos = torch.cat([self.next_pos, other.next_pos])
        self.last = torch.cat([self.last, other.last])

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in order) and drop leading columns that no kept row attends to."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        if not self.mergeable:  # e.g. sliding-window layers: select rows, keep every column
            self.cache.batch_select_indices(index)
            start = 0
        else:
            used = mask.any(dim=0).nonzero()
            start = int(used[0]) if used.numel() else mask.shape[1]
            for layer, keys, values in self._kv():
                layer.keys = keys.index_select(0, index)[:, :, start:]
                layer.values = values.index_select(0, index)[:, :, start:]
        self.mask = mask[:, start:]
        self.next_pos = self.next_pos.index_select(0, index)
        self.last = self.last.index_select(0, index)


def _forward(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
             cache: DynamicCache) -> torch.Tensor:
    # Like model.generate: an all-ones mask is dropped, so a lone row runs the exact unpadded path.
    attention = None if bool(mask.all()) else mask
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, cache=cache,
                use_cache=True, logits_to_keep=1)
    logits: torch.Tensor = out.logits[:, -1, :].float()  # [batch, vocab]
    return logits


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows left-padded into one batch.

    Returns:
        ``[batch, seq]`` ids, ``[batch, seq]`` attention mask (1 = real token) and ``[batch, seq]``
        position ids counting real tokens only, as ``model.generate`` computes them.
    """
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return ids, mask, positions


def prefill(model: Any, prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[KVBatch, torch.Tensor]:
    """Run left-padded prompts through the model.

    Args:
        model: causal LM.
        prompts: token ids per row (non-empty).
        pad_id: id used for padding (masked out).

    Returns:
        The new batch (``last`` still unset: zeros) and ``[batch, vocab]`` next-token logits.
    """
    device = next(model.parameters()).device
    ids, mask, positions = left_pad(prompts, pad_id, device)
    cache = DynamicCache(config=model.config)
    logits = _forward(model, ids, mask, positions, cache)
    batch = KVBatch(cache, mask, mask.sum(dim=1), torch.zeros(len(prompts), dtype=torch.long, device=device))
    return batch, logits


def decode_step(model: Any, batch: KVBatch) -> torch.Tensor:
    """Feed every row's last token; returns ``[batch, vocab]`` next-token logits."""
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.size, 1))], dim=1)
    logits = _forward(model, batch.last[:, None], batch.mask, batch.next_pos[:, None], batch.cache)
    batch.next_pos = batch.next_pos + 1
    return logits


def sample(logits: torch.Tensor, temperatures: Sequence[float], top_ps: Sequence[float],
           generators: Sequence[torch.Generator | None]) -> list[int]:
    """One token per row: greedy where temperature is 0, else temperature + nucleus sampling.

    Each sampling row draws from its own generator, so a seeded row's tokens do not depend on the
    rows it is batched with.

    Args:
        logits: ``[batch, vocab]`` float32.
        temperatures: per row, 0 = greedy.
        top_ps: per row nucleus mass in (0, 1].
        generators: per row (None only for greedy rows).
    """
    tokens = logits.argmax(dim=-1).tolist()
    for row, temperature in enumerate(temperatures):
        if temperature <= 0:
            continue
        scores = logits[row] / max(temperature, MIN_TEMPERATURE)  # [vocab]
        if top_ps[row] < 1.0:
            ordered, order = scores.sort(descending=True)
            probs = ordered.softmax(dim=-1)
            # drop a token when the mass before it already reaches top_p (the first one always stays)
            drop = (probs.cumsum(dim=-1) - probs) >= top_ps[row]
            drop[0] = False  # a top_p that rounds to 0 in float32 must still keep the likeliest token
            scores = scores.index_fill(0, order[drop], float("-inf"))
        probs = scores.softmax(dim=-1)
        generator = generators[row]
        tokens[row] = int(torch.multinomial(probs.cpu(), 1, generator=generator))
    return tokens


#: Lowest temperature sampled with: below it float32 logits overflow to inf (a NaN distribution).
MIN_TEMPERATURE = 1e-3


def ban_eos(logits: torch.Tensor, ignore_eos: Sequence[bool], eos: set[int]) -> torch.Tensor:
    """``logits`` with the EOS ids at -inf in rows that must run to their length limit."""
    if not any(ignore_eos) or not eos:
        return logits
    logits = logits.clone()
    banned = torch.tensor(sorted(eos), dtype=torch.long)
    for row, ignore in enumerate(ignore_eos):
        if ignore:
            logits[row, banned] = float("-inf")
    return logits


def row_generator(temperature: float, seed: int | None) -> torch.Generator | None:
    """A sampling row's own generator (seeded, or from a fresh random seed); None for greedy rows."""
    if temperature <= 0:
        return None
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))


def select_plans(plans: dict[int, SteeringPlan], rows: Sequence[int]) -> dict[int, SteeringPlan]:
    """The plans of a batch reduced to ``rows`` (in order)."""
    index = torch.tensor(list(rows), dtype=torch.long)
    return {layer: SteeringPlan(p.row_vector.index_select(0, index), p.vectors, p.alpha)
            for layer, p in plans.items()}


def run_batch(model: Any, hooks: ResidualHooks | None, prompts: Sequence[Sequence[int]],
              plans: dict[int, SteeringPlan], params: SamplingParams, tokenizer: Any, eos: set[int],
              pad_id: int) -> list[TextTracker]:
    """Generate for a static batch: prefill, then one decode step per token until every row ends.

    Rows that end leave the batch (their cache rows are dropped), so the rest runs as it would alone.

    Args:
        model: causal LM.
        hooks: the model's residual hooks (``plans`` are applied through them); None runs the model as
            it is (a caller's own steering context, or none).
        prompts: token ids per row.
        plans: per-layer steering for the batch (``steering.guard.batch_plans``).
        params: decoding parameters shared by the rows.
        tokenizer: decodes the answers.
        eos: token ids that end a row.
        pad_id: padding id.

    Returns:
        One finished ``TextTracker`` per row (``ids``, ``text``, ``finish_reason``).
    """
    n = len(prompts)
    trackers = [TextTracker(tokenizer, params.stop, eos, params.max_new_tokens) for _ in range(n)]
    generators = [row_generator(params.temperature, params.seed) for _ in range(n)]
    steer = hooks.steer if hooks is not None else (lambda _: nullcontext())
    with steer(plans):
        batch, logits = prefill(model, prompts, pad_id)
    rows = list(range(n))  # original index of each batch row
    while True:
        logits = ban_eos(logits, [params.ignore_eos] * len(rows), eos)
        tokens = sample(logits, [params.temperature] * len(rows), [params.top_p] * len(rows),
                        [generators[r] for r in rows])
        keep = [pos for pos, (r, t) in enumerate(zip(rows, tokens, strict=True)) if trackers[r].push(t) is None]
        if not keep:
            return trackers
        if len(keep) < len(rows):
            batch.keep(keep)
            plans = select_plans(plans, keep)
            rows = [rows[k] for k in keep]
        batch.last = torch.tensor([tokens[k] for k in keep], dtype=torch.long, device=batch.mask.device)
        with steer(plans):
            logits = decode_step(model, batch)


class TextTracker:
    """A row's generated tokens as text: EOS, stop strings, length limit and safe streaming deltas.

    Args:
        tokenizer: decodes ids (special tokens skipped).
        stop: stop strings; the text is cut before the first one found.
        eos: token ids that end the row (not part of the text).
        max_new_tokens: length limit.
        prefix: text of an answer being continued (already generated earlier; part of ``text``).
        prefix_tokens: its tokens, counted against ``max_new_tokens``.
        emitted: characters of ``text`` already sent (default: all of ``prefix``).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], eos: set[int], max_new_tokens: int, *,
                 prefix: str = "", prefix_tokens: int = 0, emitted: int | None = None) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._eos = eos
        self._max = max_new_tokens
        self._prefix = prefix
        #: tokens of ``prefix`` (an answer continued from text already sent), counted against the limit
        self.prefix_tokens = prefix_tokens
        self.ids: list[int] = []
        self.text = prefix
        self._emitted = len(prefix) if emitted is None else emitted
        self.finish_reason: str | None = None

    def push(self, token: int) -> str | None:
        """Add a sampled token; returns the finish reason (``stop``/``length``) or None to go on."""
        self.finish_reason = self._push(token)
        return self.finish_reason

    def _push(self, token: int) -> str | None:
        if token in self._eos:
            return "stop"
        self.ids.append(token)
        self.text = self._prefix + self._tokenizer.decode(self.ids, skip_special_tokens=True)
        cuts = [c for c in (self.text.find(s, max(0, len(self._prefix) - len(s) + 1)) for s in self._stop) if c >= 0]
        if cuts:
            self.text = self.text[:min(cuts)]
            return "stop"
        return "length" if self.prefix_tokens + len(self.ids) >= self._max else None

    @property
    def emitted(self) -> int:
        """Characters of ``text`` handed out as deltas so far."""
        return self._emitted

    def delta(self, final: bool, upto: int | None = None) -> str:
        """Text not streamed yet. Until ``final``, hold back an incomplete UTF-8 character and any
        tail that could still grow into a stop string (it might be cut); never past ``upto``
        characters (the part the answer policy has checked)."""
        safe = self.text if upto is None else self.text[:upto]
        if not final:
            safe = safe.rstrip("\ufffd")
            hold = max((k for s in self._stop for k in range(1, len(s)) if safe.endswith(s[:k])), default=0)
            safe = safe[:len(safe) - hold]
        if len(safe) <= self._emitted:
            return ""
        out, self._emitted = safe[self._emitted:], len(safe)
        return out
