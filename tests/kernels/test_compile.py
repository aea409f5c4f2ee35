"""The GUARD-IT Eq. 8 kernel (arXiv 2605.12765) compiles to an sm_90 cubin without spills, no GPU needed.

The interpreter runs the kernel's semantics on CPU but skips Triton's compiler; this test runs the
real compiler (a fresh process without TRITON_INTERPRET) for the launch shapes ``pick_config`` uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernels.inputs import HAS_TRITON, ON_CUDA

SCRIPT = r"""
import pathlib, subprocess, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import kernels  # noqa: F401
gr = sys.modules["kernels.gated_redirect"]
kernel = gr._gated_redirect_kernel
names = kernel.arg_names
bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
for dtype, d_model, per_vector, in_place in [("bf16", 576, True, False), ("fp16", 4096, False, True),
                                             ("fp32", 769, True, True), ("bf16", 16384, False, False)]:
    cfg = gr.pick_config(4096, d_model)
    types = {"h_ptr": "*" + dtype, "out_ptr": "*" + dtype, "idx_ptr": "*i32", "v_ptr": "*" + dtype,
             "alpha_ptr": "*fp32" if per_vector else "constexpr", "alpha": "fp32", "eps": "fp32"}
    consts = {"HAS_ALPHA_VEC": per_vector, "IN_PLACE": in_place, "ONE_PASS": cfg.block_d >= d_model,
              "BLOCK_M": cfg.block_m, "BLOCK_D": cfg.block_d}
    if not per_vector:
        consts["alpha_ptr"] = None
    signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    constexprs = {(names.index(n),): v for n, v in consts.items()}
    src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": cfg.num_warps})
    cubin = pathlib.Path(sys.argv[1]) / f"{dtype}_{d_model}.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    if (bin_dir / "cuobjdump").exists():
        usage = subprocess.run([str(bin_dir / "cuobjdump"), "-res-usage", str(cubin)],
                               capture_output=True, text=True, check=True).stdout
        assert "LOCAL:0" in usage, f"register spills for {dtype} d_model={d_model}: {usage}"
    print(dtype, d_model, cfg, "ok")
"""


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(ON_CUDA, reason="on CUDA the native kernel tests compile the kernel")
def test_kernel_compiles_for_sm90_without_register_spills(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_DEFAULT_FP_FUSION="1")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
