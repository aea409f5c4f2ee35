"""GUARD-IT parameters (arXiv 2605.12765): default layer, range checks, unsupported models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from steering.config import BuildConfig, check_alpha, check_layer, check_threshold, default_layer
from steering.errors import ConfigError, UnsupportedModelError
from steering.hooks import ResidualHooks
from steering.layers import d_model, decoder_blocks, n_layers


@pytest.mark.parametrize(
    ("depth", "layer"),
    [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 1), (8, 1), (12, 2), (16, 3), (24, 5), (30, 7), (32, 7)],
)
def test_default_layer_is_the_output_of_block_round_half_up_of_a_quarter_minus_one(
    depth: int, layer: int
) -> None:
    # Output of block round_half_up(n / 4) - 1 (never below block 0): 30 layers -> 7.5 -> 8 -> block 7.
    assert default_layer(depth) == layer


@pytest.mark.parametrize("value", [-1.0, -0.25, 0, 0.55, 1, 1.0])
def test_thresholds_in_minus_one_one_are_accepted(value: float) -> None:
    assert check_threshold(value) == float(value)


@pytest.mark.parametrize("value", [-1.0001, 1.0001, 2, float("nan"), float("inf"), "0.5", None])
def test_thresholds_outside_minus_one_one_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError, match=r"expected threshold in \[-1, 1\]") as info:
        check_threshold(value)  # type: ignore[arg-type]
    assert info.value.field == "threshold"


@pytest.mark.parametrize("value", [-0.001, -1, float("inf"), float("nan"), "0.2", True, 4.001, 1e308])
def test_negative_non_finite_or_huge_alpha_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"expected alpha in \[0, 4\]") as info:
        check_alpha(value)  # type: ignore[arg-type]
    assert info.value.field == "alpha"


def test_zero_and_the_largest_alpha_are_accepted() -> None:
    assert check_alpha(0) == 0.0
    assert check_alpha(4) == 4.0


@pytest.mark.parametrize("layer", [-1, 3, 30, True, 1.0, "1", None])
def test_unknown_layers_are_config_errors(layer: object) -> None:
    with pytest.raises(ConfigError, match=r"layer an integer in \[0, 2\] for this 3-layer model") as info:
        check_layer(layer, 3)  # type: ignore[arg-type]
    assert info.value.field == "layer"


def test_known_layers_pass_the_layer_check() -> None:
    assert [check_layer(i, 3) for i in range(3)] == [0, 1, 2]


def test_build_config_validates_its_ranges() -> None:
    with pytest.raises(ConfigError):
        BuildConfig(threshold=1.5)
    with pytest.raises(ConfigError):
        BuildConfig(alpha=-1.0)
    with pytest.raises(ConfigError) as info:
        BuildConfig(k_max=0)
    assert info.value.field == "k_max"
    with pytest.raises(ConfigError):
        BuildConfig(max_documents=0)


def test_an_encoder_decoder_model_is_unsupported() -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2, decoder_start_token_id=0
        )
    )
    with pytest.raises(UnsupportedModelError, match="found encoder-decoder 't5'") as info:
        decoder_blocks(model)
    assert info.value.field == "model"
    with pytest.raises(UnsupportedModelError):
        ResidualHooks(model).ensure(0)


def test_a_plain_module_is_unsupported() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(UnsupportedModelError, match="found architecture 'Sequential'"):
        n_layers(model)
    with pytest.raises(UnsupportedModelError):
        ResidualHooks(model).ensure(0)


def test_d_model_of_a_model_without_config_is_an_unsupported_model_error() -> None:
    # Library functions raise SteeringError subclasses on bad input, never AttributeError.
    with pytest.raises(UnsupportedModelError):
        d_model(torch.nn.Linear(4, 4))


def test_the_tested_families_report_their_width_and_depth(make_tiny: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny("gpt2", n_layers=2, hidden=48)
    assert (n_layers(model), d_model(model)) == (2, 48)
