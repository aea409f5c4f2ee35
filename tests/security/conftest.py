"""A real ``guardit serve`` on a model that really knows the forgotten people: the TOFU target (the
embedded SmolLM2 with the TOFU LoRA adapter of ``artifacts/tofu-lora/target`` merged in), with TOFU
forget01 (two authors) registered. Attacks go through the generate scope; the compare scope gives
the unsteered arm they are judged against."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.live_server import REPO, LiveServer, model_cache, running, tofu

#: The attack server reads long prompts (the truncation attacks use ~2,000 tokens).
ATTACK_ENV = {"GUARDIT_MAX_PROMPT_TOKENS": "4096", "GUARDIT_MAX_BODY_BYTES": "1048576",
              "GUARDIT_MAX_BATCH_SIZE": "8"}


def merged_tofu_target() -> Path:
    """The TOFU target as a plain HF model dir in the shared model cache (merged once)."""
    out = model_cache() / "tofu-target-merged"
    if (out / "config.json").is_file():
        return out
    import torch

    from evals.finetune import load_adapter
    from steering.loading import EMBEDDED_MODEL, load_model

    loaded = load_model(EMBEDDED_MODEL, cache_dir=model_cache(), device="cpu", dtype=torch.float32)
    model = load_adapter(loaded.model, REPO / "artifacts" / "tofu-lora" / "target", merge=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(tmp))
    tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def attack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The TOFU target behind a real server, forget01 registered over HTTP and active."""
    env = {**ATTACK_ENV, "GUARDIT_MODEL": str(merged_tofu_target())}
    with running(tmp_path_factory.mktemp("attack-server"), env) as server:
        body: dict[str, Any] = {
            "name": "tofu-forget01", "qa": [{"question": r["question"], "answer": r["answer"]}
                                            for r in tofu("forget01")],
            "reason": "right-to-be-forgotten request (test)", "requested_by": "tests"}
        fs_id = server.register(body)
        assert server.wait_status(fs_id, timeout_s=900)[-1] == "active", server.log_tail()
        yield server
