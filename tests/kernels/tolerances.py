"""Per-dtype absolute tolerances for kernel-vs-reference checks (GUARD-IT Eq. 8 kernels).

Used in the flash-attention bound: kernel error <= 2 x same-dtype PyTorch error + ATOL[dtype],
both errors measured against the float64 reference. Values are about one ulp at |x| ~ 4.
"""

from __future__ import annotations

import torch

ATOL: dict[torch.dtype, float] = {
    torch.float32: 1e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3.2e-2,
}

# Relative tolerance for properties (norm preservation) of results stored in each dtype; float32
# allows for float32 accumulation over thousands of elements in tiles of 16.
RTOL: dict[torch.dtype, float] = {
    torch.float32: 1e-4,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}
