"""GUARD-IT Eq. 8 (arXiv 2605.12765) inside vLLM's workers, through vLLM's public ``worker_extension_cls``.

The front end keeps a table ``key -> {layer: vector}`` in every worker (``guardit_set_table``, called with
``collective_rpc``) and tags each steered request with its key in ``SamplingParams.extra_args``. A forward
hook on each steered decoder layer maps every scheduled token to its request's table row and applies
``kernels.gated_redirect``; tokens of untagged requests, or of keys no longer in the table (revoked), are
not touched. Imports no vLLM module: this runs in the worker, which already has vLLM loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

import kernels

logger = logging.getLogger(__name__)

#: ``SamplingParams.extra_args`` key naming a request's entry in the worker's steering table.
STEER_KEY = "guardit_steer"
#: What ``guardit_set_table`` takes: key -> layer -> the ``[d_model]`` float32 vector as raw bytes
#: (bytes travel through vLLM's msgpack RPC exactly, on every transport).
WireTable = dict[str, dict[int, bytes]]


def encode_vectors(vectors: dict[int, torch.Tensor]) -> dict[int, bytes]:
    """layer -> ``[d_model]`` vector, as ``guardit_set_table`` wants it (float32, exact)."""
    return {int(layer): v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
            for layer, v in vectors.items()}


def decode_vector(raw: bytes) -> torch.Tensor:
    """The ``[d_model]`` float32 vector of ``encode_vectors``."""
    return torch.frombuffer(bytearray(raw), dtype=torch.float32)


@dataclass
class _Table:
    """The worker's steering table, split by layer: per layer the keys and their stacked vectors."""

    #: layer -> (key -> row of ``vectors``, ``[n_keys, d_model]`` vectors in the model's dtype/device)
    layers: dict[int, tuple[dict[str, int], torch.Tensor]] = field(default_factory=dict)
    #: forward calls that steered at least one token, per layer (tests read it)
    steered_calls: dict[int, int] = field(default_factory=dict)


def _decoder_layers(model: Any) -> Any:
    """The decoder blocks of a vLLM model (Llama-style ``model.model.layers``)."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"expected a decoder model with model.layers, found {type(model).__name__}")
    return layers


class GuardItWorkerExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls=steering.vllm_steer.GuardItWorkerExtension``).

    ``self`` is the worker: ``self.model_runner`` holds the model and the scheduled batch.
    """

    model_runner: Any

    def _guardit(self) -> _Table:
        table: _Table | None = getattr(self, "_guardit_table", None)
        if table is None:
            table = _Table()
            self._guardit_table = table
            self._guardit_hooks: dict[int, Any] = {}
        return table

    def guardit_set_table(self, wire: WireTable) -> int:
        """Replace the steering table (applies from the next forward step); returns its size.

        Args:
            wire: key -> layer -> vector bytes (``encode_vectors``); an empty dict stops all steering.
        """
        table = self._guardit()
        model = self.model_runner.get_model()
        param = next(model.parameters())
        by_layer: dict[int, tuple[dict[str, int], list[torch.Tensor]]] = {}
        for key, vectors in wire.items():
            for layer, raw in vectors.items():
                keys, rows = by_layer.setdefault(int(layer), ({}, []))
                keys[key] = len(rows)
                rows.append(decode_vector(raw))
        blocks = _decoder_layers(model)
        for layer in by_layer:
            if not 0 <= layer < len(blocks):
                raise ValueError(f"expected a layer in [0, {len(blocks) - 1}], found {layer}")
            if layer not in self._guardit_hooks:
                self._guardit_hooks[layer] = blocks[layer].register_forward_hook(self._guardit_hook(layer))
        # One assignment: a forward step reads the old table or the new one, never a mix.
        table.layers = {layer: (keys, torch.stack(rows).to(device=param.device, dtype=param.dtype))
                        for layer, (keys, rows) in by_layer.items()}
        return len(wire)

    def guardit_steered_calls(self) -> dict[int, int]:
        """Forward calls per layer that steered at least one token (for tests)."""
        return dict(self._guardit().steered_calls)

    def _guardit_rows(self, keys: dict[str, int], tokens: int) -> torch.Tensor | None:
        """``[tokens]`` int32 table row per scheduled token (-1: untouched), or None when no token is steered.

        Tokens are laid out request after request in the input batch's order; ``query_start_loc`` gives
        each request's first token (vLLM's attention metadata uses the same layout).
        """
        runner = self.model_runner
        batch = runner.input_batch
        req_ids = batch.req_ids
        wanted: list[tuple[int, int]] = []
        for i, req_id in enumerate(req_ids):
            state = runner.requests.get(req_id)
            params = getattr(state, "sampling_params", None) if state is not None else None
            extra = getattr(params, "extra_args", None) or {}
            key = extra.get(STEER_KEY)
            if key is not None and key in keys:
                wanted.append((i, keys[key]))
        if not wanted:
            return None
        starts = runner.query_start_loc.cpu[:len(req_ids) + 1].tolist()
        rows = torch.full((tokens,), -1, dtype=torch.int32)
        for i, row in wanted:
            rows[starts[i]:starts[i + 1]] = row
        return rows

    def _guardit_hook(self, layer: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            entry = self._guardit().layers.get(layer)
            if entry is None:
                return None
            keys, vectors = entry
            hidden, residual = output  # [tokens, d_model] each; the stream is their sum
            rows = self._guardit_rows(keys, hidden.shape[0])
            if rows is None:
                return None  # no steered request in this step: nothing touched
            rows = rows.to(hidden.device)
            sel = (rows >= 0).nonzero().squeeze(1)  # [n_sel] steered tokens
            stream = hidden.index_select(0, sel) + residual.index_select(0, sel)  # [n_sel, d_model]
            steered = kernels.gated_redirect(stream, rows.index_select(0, sel), vectors, 1.0, check_indices=False)
            # The next layer adds hidden and residual: a steered token carries all of h' in hidden and
            # zero residual, so h' + 0 reaches it exactly; other tokens keep both halves as they were.
            hidden = hidden.index_copy(0, sel, steered.to(hidden.dtype))
            residual = residual.index_copy(0, sel, torch.zeros_like(steered, dtype=residual.dtype))
            counts = self._guardit().steered_calls
            counts[layer] = counts.get(layer, 0) + 1
            return hidden, residual

        return hook
