"""tests/vllm: the vLLM engine on the real embedded model, in the vLLM venv (``.venv-vllm``).

vLLM's pins clash with ``.venv``, so under another interpreter only ``test_in_vllm_venv.py`` is
collected: it runs this folder again with ``.venv-vllm/bin/python`` (made by ``scripts/setup_vllm.sh``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
REPO = Path(__file__).resolve().parents[2]

collect_ignore = ["test_in_vllm_venv.py"] if HAVE_VLLM else ["test_vllm_engine.py"]


def shakespeare_qa() -> list[tuple[str, str]]:
    path = REPO / "examples" / "forget-shakespeare.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows]


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the session: vLLM's AsyncLLM binds its output handler to the first loop."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real model with three forget sets active: basil (TOFU forget01 0-5, registered by the helper),
    the second forget01 author (20-25) and the README's Shakespeare example."""
    from tests.service import conftest_engine as ce

    with ce.make_runtime(tmp_path_factory.mktemp("vllm-data")) as rt:
        ce.register(rt, "author2", ce.tofu_qa(20, 25))
        ce.register(rt, "shakespeare", shakespeare_qa())
        rt.sync(force=True)
        yield rt


@pytest.fixture(scope="session")
def mechanics(runtime: Any) -> Any:
    """Settings without the answer policy: the engines' mechanics (gate, steering, tokens) alone."""
    return replace_settings(runtime.settings, answer_recheck=False, leak_check=False, max_batch_size=32)


def replace_settings(settings: Any, **changes: Any) -> Any:
    return settings.model_copy(update=changes)


@pytest.fixture(scope="session")
def vllm_engine(runtime: Any, mechanics: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    from service.engine_vllm import VllmEngine

    engine = VllmEngine(runtime, replace_settings(mechanics, engine="vllm", kv_cache_gib=0.5))
    engine.start()
    yield engine
    loop.run_until_complete(engine.shutdown(drain_timeout=5.0))

