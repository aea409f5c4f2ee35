"""Residual-stream hooks of GUARD-IT (arXiv 2605.12765) on a tiny model of every supported family.

A closed gate and removed hooks must give bit-identical logits; steering must equal Eq. 8 applied by
hand, on every position, prompt and generated tokens alike, and only on the rows that ask for it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from steering.errors import ConfigError, SteeringError
from steering.hooks import ResidualHooks, SteeringPlan, StopForward, apply_plan, steered
from steering.layers import d_model, decoder_blocks, n_layers

LAYER = 1


def ids_for(model: torch.nn.Module, batch: int = 2, seq: int = 7, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(4, model.config.vocab_size, (batch, seq), generator=gen)


@torch.no_grad()
def logits_of(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits


@torch.no_grad()
def block_output(model: torch.nn.Module, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """``[batch, seq, d_model]`` output of decoder block ``layer`` (hidden_states[layer + 1])."""
    return model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[layer + 1]


def own_hooks(model: torch.nn.Module) -> int:
    """Number of ResidualHooks hooks on the blocks (transformers registers hooks of its own)."""
    return sum(
        "ResidualHooks" in getattr(fn, "__qualname__", "")
        for block in decoder_blocks(model)
        for fn in block._forward_hooks.values()
    )


def strong_vector(
    model: torch.nn.Module, ids: torch.Tensor, layer: int = LAYER, seed: int = 5
) -> torch.Tensor:
    """``[d_model]`` random direction, ten times the typical residual norm at ``layer``."""
    typical = float(block_output(model, ids, layer).norm(dim=-1).mean())
    v = torch.randn(d_model(model), generator=torch.Generator().manual_seed(seed))
    return v / v.norm() * 10 * typical


def one_plan(batch: int, vector: torch.Tensor, alpha: float = 1.0) -> SteeringPlan:
    return SteeringPlan(torch.zeros(batch, dtype=torch.int32), vector.unsqueeze(0), alpha)


def eq8_hook(vector: torch.Tensor, alpha: float) -> Callable[..., torch.Tensor]:
    """A naive forward hook: Eq. 8 by hand, in float64, on every position of the block output."""

    def hook(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        h = (output[0] if isinstance(output, tuple) else output).double()
        u = h - alpha * vector.double()
        out = (u * h.norm(dim=-1, keepdim=True) / u.norm(dim=-1, keepdim=True)).to(torch.float32)
        return (out, *output[1:]) if isinstance(output, tuple) else out

    return hook


def test_block_hook_sites_cover_every_family(family_model: torch.nn.Module) -> None:
    assert n_layers(family_model) == 3
    assert d_model(family_model) == 32
    assert len(decoder_blocks(family_model)) == 3


def test_registered_hooks_with_no_plan_give_bit_identical_logits(family_model: torch.nn.Module) -> None:
    ids = ids_for(family_model)
    base = logits_of(family_model, ids)
    hooks = ResidualHooks(family_model)
    try:
        for layer in range(3):
            hooks.ensure(layer)
        assert torch.equal(logits_of(family_model, ids), base)
        with hooks.steer({}):
            assert torch.equal(logits_of(family_model, ids), base)
        assert hooks.calls(LAYER) == (2, 0)
    finally:
        hooks.remove()


def test_a_plan_whose_rows_are_all_minus_one_gives_bit_identical_logits(
    family_model: torch.nn.Module,
) -> None:
    ids = ids_for(family_model)
    base = logits_of(family_model, ids)
    plan = SteeringPlan(
        torch.full((2,), -1, dtype=torch.int32), strong_vector(family_model, ids).unsqueeze(0)
    )
    with steered(family_model, {LAYER: plan}) as hooks:
        out = logits_of(family_model, ids)
        assert hooks.calls(LAYER) == (1, 0)
    assert torch.equal(out, base)


def test_steering_changes_the_logits_and_removing_hooks_restores_them_bit_for_bit(
    family_model: torch.nn.Module,
) -> None:
    ids = ids_for(family_model)
    base = logits_of(family_model, ids)
    hooks = ResidualHooks(family_model)
    with hooks.steer({LAYER: one_plan(2, strong_vector(family_model, ids))}):
        steered_logits = logits_of(family_model, ids)
    assert not torch.allclose(steered_logits, base, atol=1e-4)
    hooks.remove()
    assert own_hooks(family_model) == 0
    assert torch.equal(logits_of(family_model, ids), base)


def test_steered_context_manager_removes_its_hooks_even_on_error(family_model: torch.nn.Module) -> None:
    ids = ids_for(family_model)
    base = logits_of(family_model, ids)
    with pytest.raises(RuntimeError, match="boom"):
        with steered(family_model, {LAYER: one_plan(2, strong_vector(family_model, ids))}):
            raise RuntimeError("boom")
    assert own_hooks(family_model) == 0
    assert torch.equal(logits_of(family_model, ids), base)


def test_hook_steering_equals_eq8_applied_by_hand_in_float64(family_model: torch.nn.Module) -> None:
    ids = ids_for(family_model)
    vector = strong_vector(family_model, ids) / 10  # moderate: the reference is compared closely
    alpha = 0.8
    handle = decoder_blocks(family_model)[LAYER].register_forward_hook(eq8_hook(vector, alpha))
    try:
        reference = logits_of(family_model, ids)
    finally:
        handle.remove()
    with steered(family_model, {LAYER: one_plan(2, vector, alpha)}):
        ours = logits_of(family_model, ids)
    assert not torch.allclose(reference, logits_of(family_model, ids), atol=1e-4)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_steered_block_output_keeps_every_token_norm(make_tiny: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny("llama")
    ids = ids_for(model)
    before = block_output(model, ids, LAYER)
    plan = one_plan(2, strong_vector(model, ids))
    hooks = ResidualHooks(model)
    try:
        hooks.ensure(LAYER)
        seen: list[torch.Tensor] = []
        # A later hook on the same block sees what ours returned.
        handle = decoder_blocks(model)[LAYER].register_forward_hook(lambda m, a, o: seen.append(o.clone()))
        with hooks.steer({LAYER: plan}), torch.no_grad():
            model(input_ids=ids, use_cache=False)
        handle.remove()
    finally:
        hooks.remove()
    torch.testing.assert_close(seen[0].norm(dim=-1), before.norm(dim=-1), rtol=1e-5, atol=0)
    assert not torch.allclose(seen[0], before, atol=1e-3)


def test_hooks_fire_and_steer_on_every_decode_step_under_the_kv_cache(family_model: torch.nn.Module) -> None:
    model = family_model
    ids = ids_for(model, batch=1, seq=5)
    n_new = 6
    kwargs = dict(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0, use_cache=True)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, **kwargs)
    plan = one_plan(1, strong_vector(model, ids))
    shapes: list[tuple[int, ...]] = []
    probe = decoder_blocks(model)[LAYER].register_forward_hook(lambda m, a, o: shapes.append(tuple(o.shape)))
    hooks = ResidualHooks(model)
    try:
        with hooks.steer({LAYER: plan}), torch.no_grad():
            out = model.generate(input_ids=ids, **kwargs)
        # One prefill call over the prompt, then one call per decode step for tokens 2..N.
        assert hooks.calls(LAYER) == (n_new, n_new)
    finally:
        probe.remove()
        hooks.remove()
    assert shapes == [(1, 5, 32)] + [(1, 1, 32)] * (n_new - 1)
    assert out.shape == plain.shape == (1, 5 + n_new)
    assert not torch.equal(out[:, 5:], plain[:, 5:])


def test_decode_steps_are_steered_like_a_full_forward_over_the_same_tokens(
    make_tiny: Callable[..., torch.nn.Module],
) -> None:
    model = make_tiny("llama")
    ids = ids_for(model, batch=1, seq=4)
    vector = strong_vector(model, ids) / 10
    plans = {LAYER: one_plan(1, vector, 0.8)}
    with steered(model, plans), torch.no_grad():
        gen = model.generate(
            input_ids=ids,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            pad_token_id=0,
            output_logits=True,
            return_dict_in_generate=True,
        )
        full = model(input_ids=gen.sequences, use_cache=False).logits  # [1, 8, vocab]
    cached = torch.stack(gen.logits, dim=1)  # [1, 4, vocab] from prefill + 3 cached decode steps
    torch.testing.assert_close(cached, full[:, 3:7], rtol=1e-4, atol=1e-5)


def test_per_row_plans_steer_only_their_rows(make_tiny: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny("llama")
    ids = ids_for(model, batch=3, seq=6)
    v0 = strong_vector(model, ids, seed=1) / 5
    v1 = strong_vector(model, ids, seed=2) / 5
    base = logits_of(model, ids)
    plan = SteeringPlan(torch.tensor([0, -1, 1], dtype=torch.int32), torch.stack([v0, v1]), 0.9)
    with steered(model, {LAYER: plan}):
        batch = logits_of(model, ids)
    with steered(model, {LAYER: one_plan(1, v0, 0.9)}):
        row0 = logits_of(model, ids[0:1])
    with steered(model, {LAYER: one_plan(1, v1, 0.9)}):
        row2 = logits_of(model, ids[2:3])
    assert torch.equal(batch[1], base[1])
    assert not torch.allclose(batch[0], base[0], atol=1e-4)
    assert not torch.allclose(batch[2], base[2], atol=1e-4)
    torch.testing.assert_close(batch[0], row0[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch[2], row2[0], rtol=1e-5, atol=1e-6)


def test_capture_reads_the_block_output_that_steering_writes(family_model: torch.nn.Module) -> None:
    ids = ids_for(family_model)
    reference = block_output(family_model, ids, 0)
    hooks = ResidualHooks(family_model)
    try:
        with hooks.capture(0, stop=True) as cap, torch.no_grad():
            with pytest.raises(StopForward):
                family_model(input_ids=ids, use_cache=False)
        assert cap.output is not None
        assert torch.equal(cap.output, reference)
        # Capturing without stopping returns the normal logits.
        base = logits_of(family_model, ids)
        with hooks.capture(0, stop=False) as cap2:
            assert torch.equal(logits_of(family_model, ids), base)
        assert cap2.output is not None and torch.equal(cap2.output, reference)
    finally:
        hooks.remove()


def test_capture_with_stop_skips_the_later_blocks(make_tiny: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny("llama")
    hooks = ResidualHooks(model)
    try:
        for layer in range(3):
            hooks.ensure(layer)
        with hooks.capture(0, stop=True), torch.no_grad(), pytest.raises(StopForward):
            model(input_ids=ids_for(model), use_cache=False)
        assert [hooks.calls(layer)[0] for layer in range(3)] == [1, 0, 0]
    finally:
        hooks.remove()


def test_plans_are_per_context_and_do_not_leak_after_the_block(
    make_tiny: Callable[..., torch.nn.Module],
) -> None:
    model = make_tiny("llama")
    ids = ids_for(model)
    base = logits_of(model, ids)
    hooks = ResidualHooks(model)
    try:
        with hooks.steer({LAYER: one_plan(2, strong_vector(model, ids))}):
            assert not torch.equal(logits_of(model, ids), base)
        assert torch.equal(logits_of(model, ids), base)
        hooks.ensure(LAYER)  # registering twice keeps one hook
        assert own_hooks(model) == 1
    finally:
        hooks.remove()


def test_unknown_layer_is_a_config_error(make_tiny: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny("llama")
    hooks = ResidualHooks(model)
    with pytest.raises(ConfigError, match=r"layer in \[0, 2\], found 3") as info:
        hooks.ensure(3)
    assert info.value.field == "layer"
    with pytest.raises(ConfigError):
        with hooks.steer({-1: one_plan(2, torch.ones(32))}):
            pass
    assert own_hooks(model) == 0


def test_a_plan_for_the_wrong_batch_size_is_refused() -> None:
    plan = SteeringPlan(torch.zeros(3, dtype=torch.int32), torch.ones(1, 8))
    with pytest.raises(SteeringError, match=r"row_vector of shape \(2,\), found \(3,\)"):
        apply_plan(torch.ones(2, 4, 8), plan)


def test_a_second_hooks_object_on_the_same_model_does_not_apply_a_plan_twice(
    make_tiny: Callable[..., torch.nn.Module],
) -> None:
    # E.g. a Guard keeps its hooks on the model (registered at activation) and a library user
    # steers the same model once with steered(): the plan must be applied once, by its owner.
    model = make_tiny("llama")
    ids = ids_for(model)
    vector = strong_vector(model, ids) / 10
    handle = decoder_blocks(model)[LAYER].register_forward_hook(eq8_hook(vector, 0.8))
    try:
        reference = logits_of(model, ids)
    finally:
        handle.remove()
    resident = ResidualHooks(model)
    resident.ensure(LAYER)
    try:
        with steered(model, {LAYER: one_plan(2, vector, 0.8)}):
            ours = logits_of(model, ids)
        resident_calls = resident.calls(LAYER)
    finally:
        resident.remove()
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert resident_calls == (1, 0)


def test_a_plan_steers_only_the_model_whose_hooks_it_was_given_to(
    make_tiny: Callable[..., torch.nn.Module],
) -> None:
    model, other = make_tiny("llama"), make_tiny("llama", seed=1)
    ids = ids_for(model)
    other_base = logits_of(other, ids)
    hooks, other_hooks = ResidualHooks(model), ResidualHooks(other)
    other_hooks.ensure(LAYER)
    try:
        with hooks.steer({LAYER: one_plan(2, strong_vector(model, ids))}):
            logits_of(model, ids)
            other_logits = logits_of(other, ids)  # e.g. the base arm of an A/B comparison
    finally:
        hooks.remove()
        other_hooks.remove()
    assert torch.equal(other_logits, other_base)


def test_a_plan_set_in_one_thread_is_invisible_to_forward_passes_in_another(
    make_tiny: Callable[..., torch.nn.Module],
) -> None:
    import threading

    model = make_tiny("llama")
    ids = ids_for(model)
    base = logits_of(model, ids)
    plan = one_plan(2, strong_vector(model, ids))
    hooks = ResidualHooks(model)
    hooks.ensure(LAYER)
    entered, done = threading.Event(), threading.Event()
    results: dict[str, torch.Tensor] = {}

    def steering_thread() -> None:
        with hooks.steer({LAYER: plan}):
            entered.set()
            done.wait(timeout=30)
            results["steered"] = logits_of(model, ids)

    worker = threading.Thread(target=steering_thread)
    worker.start()
    try:
        assert entered.wait(timeout=30)
        results["other"] = logits_of(model, ids)  # runs while the other thread's plan is set
        done.set()
        worker.join(timeout=30)
    finally:
        done.set()
        hooks.remove()
    assert torch.equal(results["other"], base)
    assert not torch.allclose(results["steered"], base, atol=1e-4)


def test_a_plan_indexing_past_its_vector_table_is_refused() -> None:
    with pytest.raises(SteeringError, match=r"row_vector entries in \[-1, 0\], found \[-1, 1\]"):
        SteeringPlan(torch.tensor([1, -1], dtype=torch.int32), torch.ones(1, 8))
    with pytest.raises(SteeringError):
        SteeringPlan(torch.tensor([-2], dtype=torch.int32), torch.ones(1, 8))
