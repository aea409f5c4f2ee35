"""GUARD-IT end to end (arXiv 2605.12765) on a tiny Llama, a character tokenizer and the real gate
embedder: a closed gate and a revoked set leave the base model's logits bit for bit untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch

from steering.config import BuildConfig
from steering.errors import ConfigError, SteeringError
from steering.forget_set import make_documents
from steering.gate_input import gate_input
from steering.guard import Guard, SamplingParams
from steering.vectors import ForgetSetArtifacts

FORGET = [
    "The Eiffel Tower stands in Paris, France.",
    "Paris is home to the Eiffel Tower.",
    "Gustave Eiffel built the tower in Paris for the 1889 fair.",
]
RETAIN = ["The weather is mild today.", "She walked to the store.", "Numbers can be added and multiplied."]
ON_TOPIC = "Where is the Eiffel Tower?"
OFF_TOPIC = "How many legs does a spider have?"
PARAMS = SamplingParams(max_new_tokens=4)


@pytest.fixture(scope="module")
def lm(char_tokenizer: Any, make_tiny: Callable[..., torch.nn.Module]) -> torch.nn.Module:
    return make_tiny("llama", vocab_size=len(char_tokenizer))


@pytest.fixture(scope="module")
def artifacts(lm: torch.nn.Module, char_tokenizer: Any, embedder: Any) -> ForgetSetArtifacts:
    guard = Guard(lm, char_tokenizer, embedder)
    try:
        return guard.build(make_documents(FORGET), retain=RETAIN, config=BuildConfig(k_max=2, seed=0))
    finally:
        guard.hooks.remove()


@pytest.fixture
def guard(lm: torch.nn.Module, char_tokenizer: Any, embedder: Any) -> Iterator[Guard]:
    g = Guard(lm, char_tokenizer, embedder)
    try:
        yield g
    finally:
        g.hooks.remove()


@torch.no_grad()
def run_recording_logits(model: torch.nn.Module, call: Callable[[], Any]) -> tuple[Any, list[torch.Tensor]]:
    """Run ``call`` and record every lm_head output ``[batch, seq, vocab]`` it causes."""
    seen: list[torch.Tensor] = []
    handle = model.lm_head.register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))
    try:
        return call(), seen
    finally:
        handle.remove()


def plain_generate(
    model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str]
) -> tuple[Any, list[torch.Tensor]]:
    """The unhooked base model, decoding exactly as Guard.generate does."""
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    return run_recording_logits(
        model,
        lambda: model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            max_new_tokens=PARAMS.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            do_sample=False,
        ),
    )


def test_the_gate_reads_every_turn_of_every_role_and_names_over_whole_turns() -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Where is it?"},
    ]
    assert gate_input("plain").windows == ("plain",)
    seen = gate_input(chat)
    assert seen.windows == ("Be brief.", "hi", "hello", "Where is it?", "Be brief.\nhi\nhello\nWhere is it?")
    assert seen.full_texts == (*seen.windows,)
    assert gate_input([{"role": "user", "content": "only"}]).windows == ("only",)


def test_a_guard_with_an_empty_gate_is_bit_identical_to_the_base_model(
    guard: Guard, lm: torch.nn.Module
) -> None:
    prompts = [ON_TOPIC, OFF_TOPIC]
    expected_ids, expected = plain_generate(lm, guard.tokenizer, prompts)
    guard.hooks.ensure(0)  # even with a hook registered
    gens, seen = run_recording_logits(lm, lambda: guard.generate(prompts, PARAMS))
    assert len(seen) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    assert [g.steered for g in gens] == [False, False]
    assert [g.matched for g in gens] == [(), ()]
    prompt_len = guard.tokenizer(prompts, padding=True, return_tensors="pt")["input_ids"].shape[1]
    assert gens[1].token_ids == tuple(
        expected_ids[1, prompt_len : prompt_len + gens[1].completion_tokens].tolist()
    )


def test_an_open_gate_steers_only_its_row_and_revoking_restores_bit_identity(
    guard: Guard, lm: torch.nn.Module, artifacts: ForgetSetArtifacts
) -> None:
    prompts = [ON_TOPIC, OFF_TOPIC]
    _, expected = plain_generate(lm, guard.tokenizer, prompts)
    guard.activate("paris", artifacts, threshold=0.5, alpha=2.0)
    gens, seen = run_recording_logits(lm, lambda: guard.generate(prompts, PARAMS))
    assert [g.steered for g in gens] == [True, False]
    assert {m.forget_set_id for m in gens[0].matched} == {"paris"} and gens[1].matched == ()
    calls, steered_calls = guard.hooks.calls(artifacts.layer)
    assert calls == steered_calls == len(seen) > 0  # every prefill and decode step was steered
    assert not torch.allclose(seen[0][0], expected[0][0], atol=1e-4)
    for got, want in zip(seen, expected, strict=False):
        assert torch.equal(got[1], want[1])  # the off-topic row is the base model's, bit for bit

    guard.deactivate("paris")
    assert guard.state.empty
    gens, seen = run_recording_logits(lm, lambda: guard.generate(prompts, PARAMS))
    assert [g.steered for g in gens] == [False, False]
    assert len(seen) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))


def test_a_row_with_steering_switched_off_is_the_base_model(
    guard: Guard, lm: torch.nn.Module, artifacts: ForgetSetArtifacts
) -> None:
    _, expected = plain_generate(lm, guard.tokenizer, [ON_TOPIC])
    guard.activate("paris", artifacts, threshold=0.5, alpha=2.0)
    gens, seen = run_recording_logits(lm, lambda: guard.generate([ON_TOPIC], PARAMS, steer=False))
    assert gens[0].steered is False
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))


def test_the_gate_opens_on_a_chat_whose_latest_user_turn_is_on_topic(
    guard: Guard, artifacts: ForgetSetArtifacts
) -> None:
    guard.activate("paris", artifacts, threshold=0.5, alpha=2.0)
    chat = [
        {"role": "user", "content": OFF_TOPIC},
        {"role": "assistant", "content": "Eight."},
        {"role": "user", "content": FORGET[1]},
    ]
    on, off = guard.gate([chat, OFF_TOPIC])
    assert on and all(m.forget_set_id == "paris" and m.similarity >= 0.5 for m in on)
    assert off == []


def test_activate_refuses_bad_parameters_and_keeps_the_state(
    guard: Guard, artifacts: ForgetSetArtifacts
) -> None:
    with pytest.raises(ConfigError) as info:
        guard.activate("paris", artifacts, threshold=1.5, alpha=0.2)
    assert info.value.field == "threshold"
    with pytest.raises(ConfigError) as info:
        guard.activate("paris", artifacts, threshold=0.5, alpha=-0.2)
    assert info.value.field == "alpha"
    assert guard.state.empty


def test_activate_refuses_artifacts_built_for_another_model_width(
    guard: Guard, artifacts: ForgetSetArtifacts
) -> None:
    # PSVs of width 16 for a 32-wide model would otherwise fail every matching request later,
    # inside the kernel, with a plain ValueError (an HTTP 500 instead of a 422 at activation).
    narrow = ForgetSetArtifacts(
        artifacts.centroids,
        artifacts.psvs[:, :16],
        artifacts.retain_direction[:16],
        artifacts.mean_norm,
        artifacts.layer,
        artifacts.labels,
        artifacts.silhouette,
    )
    with pytest.raises(SteeringError, match="32"):
        guard.activate("narrow", narrow, threshold=0.5, alpha=1.0)
    assert guard.state.empty
