"""Loaders for the benchmark data (TOFU, MUSE, RWKU) and where that data and the TOFU adapters live.

Nothing here assumes a source checkout: every loader takes the data folder as an argument (``guardit
eval --data DIR``); only when none is given does it fall back to the ``data/`` of the checkout this
package was imported from, if that folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steering.errors import ConfigError

#: The source checkout this package sits in (its parent folder); meaningful only when run from one.
_CHECKOUT = Path(__file__).resolve().parents[1]


def default_data_root() -> Path | None:
    """The checkout's ``data/`` when it holds benchmark data, else None."""
    path = _CHECKOUT / "data"
    return path if (path / "tofu").is_dir() else None


def default_adapters() -> Path | None:
    """The checkout's ``artifacts/tofu-lora`` (``scripts/finetune_tofu.py``) when present, else None."""
    path = _CHECKOUT / "artifacts" / "tofu-lora"
    return path if path.is_dir() else None


def data_dir(override: Path | None = None) -> Path:
    """The benchmark data folder: ``override`` or the checkout's ``data/``."""
    path = override or default_data_root()
    if path is None or not (path / "tofu").is_dir():
        raise ConfigError(f"expected benchmark data (tofu/, muse/) under {path or 'the --data folder'}, "
                          "found none", field="data")
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
        raise ConfigError(f"expected RWKU data at {path}, found none", field="data")
    return read_jsonl(path)
