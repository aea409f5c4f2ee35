"""Benchmark GUARD-IT Eq. 8 (arXiv 2605.12765): fused kernel vs unfused PyTorch ops vs a plain copy.

CUDA: achieved bandwidth of the Triton kernel ((bytes read + written) / median time from
``triton.testing.do_bench``) against a device-to-device copy (the ceiling) and the unfused ops.
CPU: the reference path (the CPU production path) against the unfused ops.

    python benchmarks/kernel_bench.py [--quick] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from kernels import gated_redirect_ref  # noqa: E402
from kernels.gated_redirect import gated_redirect_triton  # noqa: E402

N_VECTORS = 4
ALPHA = 0.5
EPS = 1e-6
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def unfused(h: torch.Tensor, idx: torch.Tensor, vectors: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 8 the naive way: separate PyTorch ops, each one reading or writing ``[tokens, d_model]``."""
    v = vectors[idx.clamp(min=0).long()]  # [tokens, d_model]
    u = h - alpha * v
    scale = h.norm(dim=-1, keepdim=True) / u.norm(dim=-1, keepdim=True).clamp_min(EPS)
    return torch.where((idx >= 0).unsqueeze(-1), u * scale, h)


def copy_rows(h: torch.Tensor) -> torch.Tensor:
    """The bandwidth ceiling: read ``h`` once, write a copy once."""
    return torch.empty_like(h).copy_(h)


def make_inputs(tokens: int, d_model: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    h = torch.randn(tokens, d_model, device=device).to(dtype)  # [tokens, d_model]
    vectors = torch.randn(N_VECTORS, d_model, device=device).to(dtype)  # [n_vectors, d_model]
    idx = torch.randint(0, N_VECTORS, (tokens,), device=device, dtype=torch.int32)  # every row gated
    return h, idx, vectors


def cpu_median_ms(fn: Callable[[], object], min_time_s: float) -> float:
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench_cuda(tokens_list: list[int], d_models: list[int], dtype: torch.dtype) -> list[str]:
    from triton.testing import do_bench

    rows = [
        f"{'d_model':>7} {'tokens':>6} {'fused us':>9} {'GB/s':>7} {'% copy':>7} "
        f"{'copy GB/s':>9} {'unfused us':>10} {'speedup':>7}"
    ]
    for d_model in d_models:
        for tokens in tokens_list:
            h, idx, vectors = make_inputs(tokens, d_model, dtype, "cuda")
            fused = partial(gated_redirect_triton, h, idx, vectors, ALPHA, check_indices=False)
            fused_ms = do_bench(fused, return_mode="median")
            copy_ms = do_bench(partial(copy_rows, h), return_mode="median")
            unfused_ms = do_bench(partial(unfused, h, idx, vectors, ALPHA), return_mode="median")
            rows_bytes = 2 * h.numel() * h.element_size()  # read h once, write h' once
            extra = vectors.numel() * vectors.element_size() + idx.numel() * idx.element_size()
            fused_gbs = (rows_bytes + extra) / fused_ms / 1e6
            copy_gbs = rows_bytes / copy_ms / 1e6
            rows.append(
                f"{d_model:>7} {tokens:>6} {fused_ms * 1e3:>9.1f} {fused_gbs:>7.0f} "
                f"{100 * fused_gbs / copy_gbs:>6.0f}% {copy_gbs:>9.0f} {unfused_ms * 1e3:>10.1f} "
                f"{unfused_ms / fused_ms:>6.1f}x"
            )
    return rows


def bench_cpu(
    tokens_list: list[int], d_models: list[int], dtype: torch.dtype, min_time_s: float
) -> list[str]:
    rows = [
        f"{'d_model':>7} {'tokens':>6} {'reference us':>12} {'unfused us':>10} {'speedup':>7} "
        f"{'ref, half gated us':>18} {'unfused us':>10} {'speedup':>7}"
    ]
    for d_model in d_models:
        for tokens in tokens_list:
            h, idx, vectors = make_inputs(tokens, d_model, dtype, "cpu")
            half = idx.clone()
            half[::2] = -1  # every other row untouched: the reference computes only the gated rows
            line = f"{d_model:>7} {tokens:>6}"
            for rv, width in ((idx, 12), (half, 18)):
                ref_ms = cpu_median_ms(partial(gated_redirect_ref, h, rv, vectors, ALPHA), min_time_s)
                unfused_ms = cpu_median_ms(partial(unfused, h, rv, vectors, ALPHA), min_time_s)
                line += f" {ref_ms * 1e3:>{width}.1f} {unfused_ms * 1e3:>10.1f} {unfused_ms / ref_ms:>6.2f}x"
            rows.append(line)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer shapes and shorter timing")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="default: bfloat16 (CUDA), float32 (CPU)"
    )
    parser.add_argument("--cpu", action="store_true", help="benchmark the CPU path even when CUDA is present")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = torch.cuda.is_available() and not args.cpu
    dtype = DTYPES[args.dtype or ("bfloat16" if on_cuda else "float32")]
    d_models = [576, 4096] if args.quick else [576, 2048, 4096]
    torch.manual_seed(0)
    if on_cuda:
        tokens = [1, 256, 4096, 16384] if args.quick else [1, 16, 256, 1024, 4096, 16384]
        title = f"GUARD-IT Eq. 8 on {torch.cuda.get_device_name()} ({dtype}, all rows gated)"
        rows = bench_cuda(tokens, d_models, dtype)
    else:
        tokens = [1, 16, 256] if args.quick else [1, 16, 256, 1024]
        title = f"GUARD-IT Eq. 8 on CPU, {torch.get_num_threads()} threads ({dtype}, all rows gated)"
        rows = bench_cpu(tokens, d_models, dtype, 0.2 if args.quick else 1.0)
    print(title)  # noqa: T201
    print("\n".join(rows))  # noqa: T201


if __name__ == "__main__":
    main()
