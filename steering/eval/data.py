"""Loaders for the benchmark data shipped in the repository's ``data/`` folder (TOFU, MUSE, RWKU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steering.errors import SteeringError

#: ``data/`` of a source checkout (the package lives one level below the repository root).
REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def data_dir(override: Path | None = None) -> Path:
    """The benchmark data folder: ``override`` or the checkout's ``data/``."""
    path = override or REPO_DATA
    if not (path / "tofu").is_dir():
        raise SteeringError(f"expected benchmark data (tofu/, muse/) under {path}, found none", field="data")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every object of a JSONL file."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def tofu(split: str, root: Path | None = None) -> list[dict[str, Any]]:
    """A TOFU split by name, e.g. ``forget01_perturbed``, ``world_facts``, ``retain90``."""
    return read_jsonl(data_dir(root) / "tofu" / f"{split}.jsonl")


def rwku(name: str, root: Path | None = None) -> list[dict[str, Any]]:
    """An RWKU file by name, e.g. ``targets``, ``forget_level3``, ``neighbor_level1``,
    ``forget_corpus_passage`` (rows in target order; see ``data/README.md``)."""
    path = data_dir(root) / "rwku" / f"{name}.jsonl"
    if not path.is_file():
        raise SteeringError(f"expected RWKU data at {path}, found none", field="data")
    return read_jsonl(path)
