"""Offline GUARD-IT (arXiv 2605.12765, METHOD.md steps 2-5) on a tiny Llama with a character
tokenizer and the real embedded sentence-transformer: pooling, PSVs, retain direction, mean norm.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from steering.activations import pool_activations
from steering.config import BuildConfig
from steering.errors import ConfigError
from steering.forget_set import QAPair, RenderedText, make_documents, render_qa, render_texts
from steering.hooks import ResidualHooks
from steering.vectors import ForgetSetArtifacts, build_artifacts, embed, neutral_corpus

FORGET = [
    "The Eiffel Tower stands in Paris, France.",
    "Paris is home to the Eiffel Tower.",
    "Gustave Eiffel built the tower in Paris for the 1889 fair.",
    "Bananas are a yellow tropical fruit rich in potassium.",
    "A ripe banana is yellow and sweet.",
    "Bananas grow in bunches on large tropical plants.",
]
RETAIN = ["The weather is mild today.", "She walked to the store.", "Numbers can be added and multiplied."]


@torch.no_grad()
def hand_pooled(
    model: torch.nn.Module, tokenizer: Any, texts: list[RenderedText], layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled vectors and per-token norms, by hand: each text alone (no padding) through the model
    with ``output_hidden_states``, mean over the tokens whose first character lies in a content span,
    the first token (the attention sink) left out.
    """
    pooled, norms = [], []
    for item in texts:
        enc = tokenizer(
            [item.text], return_tensors="pt", add_special_tokens=False, return_offsets_mapping=True
        )
        hidden = model(input_ids=enc["input_ids"], output_hidden_states=True, use_cache=False).hidden_states[
            layer + 1
        ][0]  # [seq, d_model]
        starts = enc["offset_mapping"][0, :, 0].tolist()
        keep = [p for p in range(1, len(starts)) if any(lo <= starts[p] < hi for lo, hi in item.spans)]
        pooled.append(hidden[keep].mean(dim=0))
        norms.append(hidden[keep].norm(dim=-1))
    return torch.stack(pooled), torch.cat(norms)


def test_pooling_excludes_padding_and_the_first_token(
    tok_model: torch.nn.Module, char_tokenizer: Any
) -> None:
    texts = render_texts(["a much longer text than the others", "short", "mid sized"])
    hooks = ResidualHooks(tok_model)
    try:
        got = pool_activations(tok_model, char_tokenizer, hooks, 1, texts, batch_size=3)
    finally:
        hooks.remove()
    expected, norms = hand_pooled(tok_model, char_tokenizer, texts, 1)
    torch.testing.assert_close(got.pooled, expected, rtol=1e-5, atol=1e-6)
    assert got.n_tokens == sum(len(t.text) - 1 for t in texts) == norms.numel()
    assert got.token_norm_sum == pytest.approx(float(norms.sum()), rel=1e-5)
    # Pooling every token of "short" (first included) gives another vector: the exclusion is real.
    with torch.no_grad():
        ids = char_tokenizer(["short"], return_tensors="pt", add_special_tokens=False)["input_ids"]
        every_token = tok_model(input_ids=ids, output_hidden_states=True).hidden_states[2][0].mean(dim=0)
    assert not torch.allclose(got.pooled[1], every_token, atol=1e-4)


def test_pooling_batches_by_length_but_returns_rows_in_input_order(
    tok_model: torch.nn.Module, char_tokenizer: Any
) -> None:
    # Batches are formed from texts of similar length (less padding); the rows must still line up
    # with the input, whatever batch each text landed in.
    texts = render_texts(["mid sized one", "abc", "the longest text of all five", "xy", "medium"])
    hooks = ResidualHooks(tok_model)
    try:
        got = pool_activations(tok_model, char_tokenizer, hooks, 1, texts, batch_size=2)
        alone = [pool_activations(tok_model, char_tokenizer, hooks, 1, [t], batch_size=1).pooled[0]
                 for t in texts]
    finally:
        hooks.remove()
    expected, _ = hand_pooled(tok_model, char_tokenizer, texts, 1)
    torch.testing.assert_close(got.pooled, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.pooled, torch.stack(alone), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "phi", "gpt2"])
def test_pooling_a_text_alone_or_padded_in_a_batch_gives_the_same_vector(
    make_tiny: Callable[..., torch.nn.Module], char_tokenizer: Any, family: str
) -> None:
    # Left padding must not shift positions: generate() numbers a padded row's tokens from its first
    # real token, so PSVs pooled in a batch must match that (absolute-position models like GPT-2 too).
    model = make_tiny(family, vocab_size=len(char_tokenizer))
    texts = render_texts(["tiny", "a considerably longer neighbour text"])
    hooks = ResidualHooks(model)
    try:
        batched = pool_activations(model, char_tokenizer, hooks, 1, texts, batch_size=2)
        alone = pool_activations(model, char_tokenizer, hooks, 1, texts, batch_size=1)
    finally:
        hooks.remove()
    assert torch.isfinite(batched.pooled).all()
    torch.testing.assert_close(batched.pooled, alone.pooled, rtol=1e-4, atol=1e-5)
    assert batched.n_tokens == alone.n_tokens


def test_qa_pooling_covers_only_the_question_and_answer_characters(
    tok_model: torch.nn.Module, char_tokenizer: Any
) -> None:
    texts = [
        render_qa(char_tokenizer, QAPair("Who?", "Ann")),
        render_qa(char_tokenizer, QAPair("Where is it?", "Rome")),
    ]
    hooks = ResidualHooks(tok_model)
    try:
        got = pool_activations(tok_model, char_tokenizer, hooks, 0, texts)
    finally:
        hooks.remove()
    expected, _ = hand_pooled(tok_model, char_tokenizer, texts, 0)
    assert got.n_tokens == len("Who?Ann") + len("Where is it?Rome")
    torch.testing.assert_close(got.pooled, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def built(
    embedder: Any, char_tokenizer: Any, make_tiny: Callable[..., torch.nn.Module]
) -> tuple[ForgetSetArtifacts, ForgetSetArtifacts, torch.nn.Module, Any]:
    """The same forget set built twice under one seed (fresh hooks each time), with its model."""
    tokenizer = char_tokenizer
    model = make_tiny("llama", vocab_size=len(tokenizer))
    docs = make_documents(FORGET)
    config = BuildConfig(k_max=4, seed=3, batch_size=4)
    results = []
    for _ in range(2):
        hooks = ResidualHooks(model)
        try:
            results.append(
                build_artifacts(model, tokenizer, embedder, hooks, docs, retain=RETAIN, config=config)
            )
        finally:
            hooks.remove()
    return results[0], results[1], model, tokenizer


def test_build_artifacts_gives_documented_shapes_and_units(built: tuple[Any, ...], embedder: Any) -> None:
    art = built[0]
    assert art.layer == 0  # default first-quartile layer of a 3-layer model
    assert art.k == 2  # two topics: Paris/Eiffel and bananas
    assert art.psvs.shape == (2, 32) and art.psvs.dtype == torch.float32
    assert art.centroids.shape == (2, 384)
    torch.testing.assert_close(art.centroids.norm(dim=1), torch.ones(2), rtol=0, atol=1e-6)
    assert float(art.retain_direction.norm()) == pytest.approx(1.0, abs=1e-6)
    assert art.mean_norm > 0
    assert art.labels.tolist()[:3] == [art.labels[0]] * 3 and art.labels.tolist()[3:] == [art.labels[3]] * 3
    assert art.labels[0] != art.labels[3]
    # Each centroid is the (unit) mean embedding of its documents.
    emb = embed(embedder, FORGET)
    for j in range(2):
        mean = emb[art.labels.numpy() == j].mean(axis=0)
        np.testing.assert_allclose(art.centroids[j].numpy(), mean / np.linalg.norm(mean), atol=1e-5)


def test_psvs_are_cluster_means_of_pooled_documents_and_retain_is_the_unit_pooled_mean(
    built: tuple[Any, ...],
) -> None:
    art, _, model, tokenizer = built
    pooled, norms = hand_pooled(model, tokenizer, render_texts(FORGET), art.layer)
    for j in range(art.k):
        torch.testing.assert_close(art.psvs[j], pooled[art.labels == j].mean(dim=0), rtol=1e-4, atol=1e-5)
    assert art.mean_norm == pytest.approx(float(norms.mean()), rel=1e-5)
    kept, _ = hand_pooled(model, tokenizer, render_texts(RETAIN), art.layer)
    r = kept.mean(dim=0)
    torch.testing.assert_close(art.retain_direction, r / r.norm(), rtol=1e-4, atol=1e-5)


def test_build_artifacts_is_deterministic_under_a_seed(built: tuple[Any, ...]) -> None:
    first, second = built[0], built[1]
    for name, tensor in first.to_tensors().items():
        assert torch.equal(tensor, second.to_tensors()[name]), name


def test_artifacts_round_trip_through_safetensors_exactly(built: tuple[Any, ...], tmp_path: Path) -> None:
    art = built[0]
    path = tmp_path / "set.safetensors"
    save_file(art.to_tensors(), str(path))
    back = ForgetSetArtifacts.from_tensors(load_file(str(path)))
    for field in ("centroids", "psvs", "retain_direction", "labels"):
        assert torch.equal(getattr(back, field), getattr(art, field)), field
    assert (back.mean_norm, back.layer, back.silhouette) == (art.mean_norm, art.layer, art.silhouette)


def test_a_single_cluster_round_trips_its_missing_silhouette() -> None:
    art = ForgetSetArtifacts(
        torch.ones(1, 4) / 2,
        torch.randn(1, 8),
        torch.ones(8) / 8**0.5,
        3.25,
        1,
        torch.zeros(2, dtype=torch.int64),
        None,
    )
    back = ForgetSetArtifacts.from_tensors(art.to_tensors())
    assert back.silhouette is None and back.k == 1 and back.mean_norm == 3.25


def test_build_artifacts_refuses_an_unknown_layer(
    tok_model: torch.nn.Module, char_tokenizer: Any, embedder: Any
) -> None:
    hooks = ResidualHooks(tok_model)
    with pytest.raises(ConfigError) as info:
        build_artifacts(
            tok_model,
            char_tokenizer,
            embedder,
            hooks,
            make_documents(["a b c"]),
            retain=RETAIN,
            config=BuildConfig(layer=3),
        )
    assert info.value.field == "layer"


def test_the_neutral_retain_corpus_ships_with_the_package() -> None:
    corpus = neutral_corpus()
    assert len(corpus) >= 20
    assert all(text == text.strip() and text for text in corpus)


def test_retain_pooling_is_cached_per_model_layer_and_texts(
    tok_model: torch.nn.Module, char_tokenizer: Any
) -> None:
    from steering.vectors import pooled_retain

    two = ["neutral one", "neutral two"]

    hooks = ResidualHooks(tok_model)
    calls: list[int] = []
    try:
        first = pooled_retain(tok_model, char_tokenizer, hooks, 1, two, batch_size=2,
                              max_tokens=64, progress=calls.append)
        again = pooled_retain(tok_model, char_tokenizer, hooks, 1, two, batch_size=2,
                              max_tokens=64, progress=calls.append)
        other_layer = pooled_retain(tok_model, char_tokenizer, hooks, 0, two, batch_size=2, max_tokens=64)
        other_texts = pooled_retain(tok_model, char_tokenizer, hooks, 1, two[:1], batch_size=2,
                                    max_tokens=64)
        fresh = pool_activations(tok_model, char_tokenizer, hooks, 1, render_texts(two))
    finally:
        hooks.remove()
    assert again is first and calls == [2, 2]  # progress still reports the texts as done
    assert other_layer is not first and other_texts is not first and other_texts.pooled.shape[0] == 1
    torch.testing.assert_close(first.pooled, fresh.pooled)
