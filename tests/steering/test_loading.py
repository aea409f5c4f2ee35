"""``auto`` dtype (bfloat16 on CUDA, float32 on CPU) and the native-bfloat16 CPU probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from steering import loading


def _no_torch_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)


def test_auto_dtype_is_bfloat16_on_cuda_and_float32_on_any_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for native in (False, True):
        monkeypatch.setattr(loading, "cpu_has_native_bf16", lambda native=native: native)
        assert loading.auto_dtype("cuda") is torch.bfloat16
        assert loading.auto_dtype("cpu") is torch.float32


def test_torch_probes_decide_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert loading.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not loading.cpu_has_native_bf16()


@pytest.mark.parametrize(("flags", "native"), [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True),
                                               ("fpu avx2 avx512f", False)])
def test_cpu_flags_decide_without_torch_probes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: str,
                                               native: bool) -> None:
    _no_torch_probes(monkeypatch)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    monkeypatch.setattr(loading, "_CPUINFO", cpuinfo)
    assert loading.cpu_has_native_bf16() is native
