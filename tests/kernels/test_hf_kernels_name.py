"""Our top-level ``kernels`` package must not pass for Hugging Face's ``kernels`` in transformers.

transformers looks up the distribution owning the import name ``kernels`` (here ``guardit``) and
its version; GUARD-IT's kernels (arXiv 2605.12765) must never switch on its hub-kernel code paths.
"""

from __future__ import annotations

import pytest

import kernels


def test_transformers_does_not_mistake_our_kernels_for_hf_kernels() -> None:
    import_utils = pytest.importorskip("transformers.utils.import_utils")
    import_utils.is_kernels_available.cache_clear()
    assert import_utils.is_kernels_available() is False


def test_kernels_defines_none_of_the_hf_kernels_api() -> None:
    for name in ("__version__", "get_kernel", "kernelize", "LayerRepository", "use_kernel_forward_from_hub"):
        assert not hasattr(kernels, name), name
