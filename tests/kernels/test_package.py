"""Import hygiene of the ``kernels`` package (GUARD-IT Eq. 8 kernels, arXiv 2605.12765)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kernels

KERNELS_DIR = Path(kernels.__file__).parent
ALLOWED_ROOTS = {"torch", "triton", "kernels", "__future__"} | set(sys.stdlib_module_names)


def test_public_api_is_the_explicit_all() -> None:
    assert kernels.__all__ == ["gated_redirect", "gated_redirect_ref"]
    assert callable(kernels.gated_redirect) and callable(kernels.gated_redirect_ref)


def test_kernels_imports_only_torch_triton_and_the_stdlib() -> None:
    found: set[str] = set()
    for path in KERNELS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    assert found - ALLOWED_ROOTS == set()


def test_kernels_never_reads_the_environment() -> None:
    for path in KERNELS_DIR.glob("*.py"):
        source = path.read_text()
        assert "os.environ" not in source and "getenv" not in source, path.name


def test_kernels_imports_and_runs_on_the_reference_without_triton() -> None:
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, kernels\n"
        "from kernels.gated_redirect import HAS_TRITON\n"
        "h = torch.randn(3, 8); idx = torch.tensor([0, -1, 0])\n"
        "out = kernels.gated_redirect(h, idx, torch.randn(1, 8), 0.5)\n"
        "assert not HAS_TRITON and torch.equal(out[1], h[1])\n"
        "assert torch.allclose(out.norm(dim=1), h.norm(dim=1))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
