"""Real-model fixtures: the embedded SmolLM2-135M-Instruct and MiniLM, converted once and cached."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steering import EMBEDDED_MODEL, Guard, load_embedder, load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"


def model_cache_dir() -> Path:
    """Shared cache of converted models (the ~20 s GGUF conversion happens once per machine)."""
    root = Path(os.environ.get("GUARDIT_TEST_CACHE", Path.home() / ".cache" / "guardit-test"))
    return root / "models"


@pytest.fixture(scope="session")
def embedder() -> object:
    return load_embedder()


@pytest.fixture(scope="module")
def guard(embedder: object) -> Iterator[Guard]:
    """A fresh guarded model per test module (loading the cached safetensors takes < 1 s)."""
    lm = load_model(EMBEDDED_MODEL, cache_dir=model_cache_dir())
    g = Guard(lm.model, lm.tokenizer, embedder)
    yield g
    g.hooks.remove()
