"""steering.vllm_steer without vLLM: the worker extension's hook on a stand-in runner and decoder."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from kernels import gated_redirect_ref
from steering.vllm_steer import STEER_KEY, GuardItWorkerExtension, decode_vector, encode_vectors

D = 8


class Layer(torch.nn.Module):
    """Returns (hidden, residual) as vLLM's Llama decoder layer does."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.eye(D))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return h @ self.w, h * 0.5


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = SimpleNamespace(layers=[Layer(), Layer()])
        self.p = torch.nn.Parameter(torch.zeros(1))


def worker(keys: list[str | None], counts: list[int]) -> tuple[Any, Model]:
    model = Model()
    req_ids = [f"r{i}" for i in range(len(keys))]
    starts = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=torch.int32)
    requests = {r: SimpleNamespace(sampling_params=SimpleNamespace(extra_args={STEER_KEY: k} if k else None))
                for r, k in zip(req_ids, keys, strict=True)}
    runner = SimpleNamespace(get_model=lambda: model, input_batch=SimpleNamespace(req_ids=req_ids),
                             query_start_loc=SimpleNamespace(cpu=starts), requests=requests)
    ext = GuardItWorkerExtension()
    ext.model_runner = runner
    return ext, model


def test_vectors_travel_as_exact_float32_bytes() -> None:
    v = torch.randn(D)
    assert torch.equal(decode_vector(encode_vectors({3: v})[3]), v)


def test_steered_requests_get_eq8_on_the_stream_and_others_stay_bit_identical() -> None:
    torch.manual_seed(0)
    ext, model = worker(["a", None, "b", "gone"], [3, 2, 1, 2])
    va, vb = torch.randn(D), torch.randn(D)
    ext.guardit_set_table({"a": encode_vectors({1: va}), "b": encode_vectors({1: vb})})
    layer = model.model.layers[1]
    h = torch.randn(8, D)
    with torch.no_grad():
        plain_hidden, plain_res = h @ layer.w, h * 0.5
    hidden, residual = layer(h)
    rows = torch.tensor([0, 0, 0, -1, -1, 1, -1, -1], dtype=torch.int32)
    want = gated_redirect_ref(plain_hidden + plain_res, rows, torch.stack([va, vb]), 1.0)
    steered = rows >= 0
    assert torch.equal((hidden + residual)[steered], want[steered])
    assert torch.equal(residual[steered], torch.zeros_like(residual[steered]))
    assert torch.equal(hidden[~steered], plain_hidden[~steered]) and torch.equal(residual[~steered],
                                                                                plain_res[~steered])
    assert ext.guardit_steered_calls() == {1: 1}


def test_an_empty_table_or_an_untagged_batch_leaves_the_layer_untouched() -> None:
    ext, model = worker([None, "a"], [2, 2])
    ext.guardit_set_table({"b": encode_vectors({0: torch.randn(D)})})
    h = torch.randn(4, D)
    hidden, residual = model.model.layers[0](h)
    assert torch.equal(hidden, h @ model.model.layers[0].w) and torch.equal(residual, h * 0.5)
    ext.guardit_set_table({})
    assert ext.guardit_steered_calls() == {}
