"""Real-model helpers for the engine and generation-route tests (fixtures in ``conftest.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]


def test_data_dir() -> Path:
    """Where converted models are cached across runs (the ~20 s GGUF conversion happens once)."""
    return Path(os.environ.get("GUARDIT_TEST_DATA_DIR", Path.home() / ".cache" / "guardit-test"))


def tofu_qa(start: int, stop: int) -> list[tuple[str, str]]:
    """QA pairs ``[start, stop)`` of TOFU forget01."""
    path = REPO / "data" / "tofu" / "forget01.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows[start:stop]]


def register(rt: Any, name: str, qa: list[tuple[str, str]] | None, alpha: float | None = 0.5,
             documents: list[str] | None = None) -> str:
    """Register and build a forget set of QA pairs or documents through the registry (as the CLI or a
    replica would)."""
    from service.runtime import Registration
    from steering.vectors import neutral_corpus

    retain = neutral_corpus()[:8]  # a short retain corpus keeps the build at a few seconds
    record = rt.register(Registration(name=name, documents=documents, qa=qa, retain=retain, reason="test",
                                      requested_by="tests", ticket=None, layer=None, threshold=None,
                                      alpha=alpha), actor="tests")
    built = rt.build_next(actor="tests")
    assert built is not None and built.id == record.id and built.status == "active", built
    return str(record.id)


def active_id(rt: Any, name: str) -> str:
    """Id of the active forget set called ``name``."""
    return str(next(r.id for r in rt.registry.active_sets() if r.name == name))


@contextmanager
def make_runtime(data_dir: Path) -> Iterator[Any]:
    """A Runtime over a fresh registry in ``data_dir``, sharing the cached converted model."""
    from service.runtime import Runtime
    from service.settings import Settings

    cache = test_data_dir() / "models"
    cache.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(cache, target_is_directory=True)
    # float32 pinned, so answers do not depend on the CPU (``auto`` picks bfloat16 where it is native)
    settings = Settings(data_dir=data_dir, database_url=None, api_keys=None, host="127.0.0.1", dtype="float32",
                        sync_interval_s=0.05, max_new_tokens=64, max_prompt_tokens=512, verify_on_build=False)
    rt = Runtime(settings)
    assert rt.guard is not None  # load now, once
    register(rt, "basil", tofu_qa(0, 5))
    try:
        yield rt
    finally:
        rt.close()
