"""Fused kernels for GUARD-IT gated activation redirection (arXiv 2605.12765, Eq. 8).

Imports only torch and (optionally) triton; ``gated_redirect`` picks Triton on CUDA, else PyTorch.
The attribute ``kernels.gated_redirect`` is the function, which hides the submodule
of the same name; reach the submodule's names with ``from kernels.gated_redirect import ...``.
"""

from kernels.dispatch import gated_redirect
from kernels.reference import gated_redirect_ref

__all__ = ["gated_redirect", "gated_redirect_ref"]
