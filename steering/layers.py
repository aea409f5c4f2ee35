"""Model adapters: where each decoder-only family keeps its blocks (the residual-stream hook sites).

Hook site ``layers.{i}.resid_post`` is the output of decoder block ``i``.
"""

from __future__ import annotations

from typing import Any

import torch

from steering.errors import UnsupportedModelError

#: Attribute paths of the decoder-block list, tried in order, by family.
_BLOCK_PATHS: tuple[str, ...] = (
    "model.layers",  # Llama, SmolLM2, Qwen2, Mistral, Gemma, Gemma2, Phi, Phi3, OLMo
    "model.language_model.layers",  # Gemma3 and other wrapped text models
    "transformer.h",  # GPT-2, GPT-J, Bloom, Falcon
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
)

#: Families tested with tiny random-init models (tests/steering/test_hooks.py).
TESTED_MODEL_TYPES = frozenset({"llama", "qwen2", "mistral", "gemma", "gemma2", "phi", "phi3", "gpt2"})


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM, in order.

    Raises:
        UnsupportedModelError: the model is not a decoder-only LM with a known block list.
    """
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"expected a decoder-only causal LM, found encoder-decoder '{config.model_type}'", field="model"
        )
    for path in _BLOCK_PATHS:
        blocks = _get_path(model, path)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
            return blocks
    model_type = getattr(config, "model_type", type(model).__name__)
    raise UnsupportedModelError(
        f"expected a decoder-only LM with blocks at one of {', '.join(_BLOCK_PATHS)}, "
        f"found architecture '{model_type}'",
        field="model",
    )


def n_layers(model: torch.nn.Module) -> int:
    """Number of decoder blocks."""
    return len(decoder_blocks(model))


def d_model(model: torch.nn.Module) -> int:
    """Width of the residual stream."""
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(f"expected a transformers model with a config, found {type(model).__name__}",
                                    field="model")
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedModelError(f"expected hidden_size in the config, found none for '{config.model_type}'")
