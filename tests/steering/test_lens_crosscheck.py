"""Cross-check of the GUARD-IT hook site (arXiv 2605.12765) against TransformerLens 4.x.

Our layer ``L`` (output of decoder block ``L``) must be TransformerLens' ``blocks.L.hook_resid_post``,
and Eq. 8 applied there through TransformerLens must give the logits our hooks give.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from steering.hooks import ResidualHooks, SteeringPlan, steered
from steering.redirect import redirect

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformer_lens") is None,
    reason="transformer_lens is not importable (pip install 'guardit[lens]')",
)

ALPHA = 0.8


@pytest.fixture(scope="module")
def bridge_and_model(
    tmp_path_factory: pytest.TempPathFactory, char_tokenizer: Any, make_tiny: Callable[..., torch.nn.Module]
) -> Iterator[tuple[Any, torch.nn.Module]]:
    """A tiny Llama saved to a temp dir and booted offline into a TransformerBridge (on a copy)."""
    from transformers import AutoTokenizer

    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:  # e.g. its better-abc dependency is missing
        pytest.skip(f"transformer_lens.model_bridge is not importable: {exc}")
    model = make_tiny("llama", vocab_size=len(char_tokenizer))
    folder: Path = tmp_path_factory.mktemp("tiny_llama_lens")
    model.save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    keys = list(model.state_dict())
    # TL needs a tokenizer loaded from disk (it reads name_or_path), and wraps the
    # hf_model it is given in place, so it gets a deep copy.
    bridge = TransformerBridge.boot_transformers(
        str(folder),
        device="cpu",
        dtype=torch.float32,
        hf_model=copy.deepcopy(model),
        tokenizer=AutoTokenizer.from_pretrained(str(folder)),
    )
    assert list(model.state_dict()) == keys  # our model was not wrapped
    yield bridge, model


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 100, (2, 9), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_our_capture_equals_transformer_lens_resid_post(
    bridge_and_model: tuple[Any, torch.nn.Module], layer: int
) -> None:
    bridge, model = bridge_and_model
    ids = _ids()
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids)
    hooks = ResidualHooks(model)
    try:
        with hooks.capture(layer, stop=False) as cap, torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        hooks.remove()
    assert cap.output is not None
    assert torch.equal(cap.output, cache[f"blocks.{layer}.hook_resid_post"])


def test_eq8_through_transformer_lens_gives_our_steered_logits(
    bridge_and_model: tuple[Any, torch.nn.Module],
) -> None:
    bridge, model = bridge_and_model
    ids = _ids(1)
    layer = 1
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    v = v / v.norm() * 2.0

    def eq8_float64(resid: torch.Tensor, hook: Any) -> torch.Tensor:
        h = resid.double()
        u = h - ALPHA * v.double()
        return (u * h.norm(dim=-1, keepdim=True) / u.norm(dim=-1, keepdim=True)).float()

    def ours_in_lens(resid: torch.Tensor, hook: Any) -> torch.Tensor:
        return redirect(resid, v, ALPHA)

    name = f"blocks.{layer}.hook_resid_post"
    with torch.no_grad():
        lens_ref = bridge.run_with_hooks(ids, fwd_hooks=[(name, eq8_float64)])
        lens_ours = bridge.run_with_hooks(ids, fwd_hooks=[(name, ours_in_lens)])
        lens_plain = bridge(ids)
    plan = SteeringPlan(torch.zeros(2, dtype=torch.int32), v.unsqueeze(0), ALPHA)
    with steered(model, {layer: plan}), torch.no_grad():
        ours = model(input_ids=ids, use_cache=False).logits
    assert not torch.allclose(ours, lens_plain, atol=1e-4)
    torch.testing.assert_close(ours, lens_ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(ours, lens_ours)
