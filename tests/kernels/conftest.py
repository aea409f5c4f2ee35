"""Kernel tests run the real Triton code: natively on CUDA, else through TRITON_INTERPRET=1 on CPU.

Triton reads TRITON_INTERPRET when ``@triton.jit`` decorates, so it is set before ``kernels`` is
imported here; if another conftest imported ``kernels`` first, the jitted functions are re-wrapped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _ensure_interpreted() -> None:
    """Re-wrap jitted functions as interpreted ones when triton was imported before the flag.

    Triton's own ``tl.zeros``, ``tl.sum`` combiners, ... are jitted at ``import triton``, so every
    loaded ``triton.*`` and ``kernels.*`` module is patched, not only our kernel module.
    """
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1":
        return
    if "triton" not in sys.modules:
        return
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "triton" or name.startswith(("triton.", "kernels."))):
            continue
        for attr, obj in list(vars(module).items()):
            if isinstance(obj, JITFunction):
                setattr(module, attr, InterpretedFunction(obj.fn))


_ensure_interpreted()

from kernels.gated_redirect import HAS_TRITON  # noqa: E402  (after TRITON_INTERPRET is set)

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
ON_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Fixed seed; one intra-op thread, since on a busy 2-core box a parallel op over ~50k elements
    waits a whole scheduler slice (~100 ms) for its second thread. Restored afterwards."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
