"""The ``guardit`` CLI end to end, as a user runs it: real model, real SQLite registry, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.registry import Registry
from tests.integration.conftest import DATA, model_cache_dir

pytestmark = pytest.mark.integration

QUESTION = "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data dir whose model cache points at the shared converted model."""
    root = tmp_path_factory.mktemp("guardit-cli")
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(cache, target_is_directory=True)
    return root


def guardit(data_dir: Path, *args: str, check: bool = True) -> tuple[int, Any]:
    env = {**os.environ, "GUARDIT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "service.cli", *args, "--json"], capture_output=True, text=True,
                          env=env, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, found {proc.stdout!r} (stderr {proc.stderr[-2000:]})"
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.returncode, json.loads(lines[0])


def registry_state(data_dir: Path) -> tuple[list[str], int]:
    """Ids of every forget set and the audit length, read straight from the SQLite file."""
    with Registry.for_data_dir(data_dir) as registry:
        return [r.id for r in registry.list()], len(registry.audit(limit=10_000))


def test_forget_add_builds_and_the_set_steers_generation_until_revoked(data_dir: Path, tmp_path: Path) -> None:
    forget = tmp_path / "basil.jsonl"
    rows = [json.loads(line) for line in (DATA / "tofu" / "forget01.jsonl").read_text().splitlines()][:20]
    forget.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _, record = guardit(data_dir, "forget", "add", "--name", "basil", "--file", str(forget),
                        "--reason", "RTBF test", "--requested-by", "tester")
    assert record["status"] == "active"
    assert record["n_documents"] == 20 and record["n_clusters"] >= 1 and record["layer"] == 7

    _, listing = guardit(data_dir, "forget", "list")
    assert [r["id"] for r in listing["forget_sets"]] == [record["id"]]

    _, gate = guardit(data_dir, "gate", QUESTION)
    assert gate["steered"] is True and gate["matched"][0]["forget_set_id"] == record["id"]
    _, closed = guardit(data_dir, "gate", "What is the capital of Australia?")
    assert closed == {"matched": [], "steered": False}

    _, ab = guardit(data_dir, "generate", "--ab", "--max-new-tokens", "40", QUESTION)
    assert ab["matched"] and ab["steered"]["guardit"]["steered"] is True
    assert ab["steered"]["text"] != ab["unsteered"]["text"]
    assert ab["first_divergent_token"] is not None

    _, revoked = guardit(data_dir, "forget", "revoke", record["id"], "--reason", "withdrawn")
    assert revoked["status"] == "revoked"
    _, after = guardit(data_dir, "generate", "--max-new-tokens", "40", QUESTION)
    assert after["guardit"] == {"steered": False, "matched": [], "rechecked": False}
    assert after["text"] == ab["unsteered"]["text"]


def test_gate_file_returns_one_result_per_prompt(data_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n{"question": "What is the capital of Egypt?"}\n')
    _, out = guardit(data_dir, "gate", "--file", str(prompts))
    assert [r["steered"] for r in out["results"]] == [False, False]


@pytest.mark.parametrize("content, needle", [
    ('{"question": "q"}\n{"text": 3}\n', "line 1"),
    ('{"text": "fine"}\nnot json\n', "line 2"),
    ("", "at least one"),
])
def test_malformed_forget_files_are_refused_with_the_line_and_nothing_is_written(
        data_dir: Path, tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    before = registry_state(data_dir)
    code, out = guardit(data_dir, "forget", "add", "--name", "bad", "--file", str(bad), check=False)
    assert code == 1
    assert needle in out["error"]["message"] and out["error"]["field"] == "file"
    assert registry_state(data_dir) == before


@pytest.mark.parametrize("flag, value, field", [("--threshold", "1.5", "threshold"), ("--alpha", "-0.1", "alpha"),
                                                ("--layer", "30", "layer")])
def test_out_of_range_parameters_are_refused_naming_the_field(data_dir: Path, tmp_path: Path, flag: str,
                                                              value: str, field: str) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Basil Mahfouz Al-Kuwaiti is a writer.\n")
    before = registry_state(data_dir)
    code, out = guardit(data_dir, "forget", "add", "--name", "x", "--file", str(good), flag, value, check=False)
    assert code == 1 and out["error"]["field"] == field
    assert registry_state(data_dir) == before


def test_unknown_forget_set_id_is_a_not_found_error(data_dir: Path) -> None:
    code, out = guardit(data_dir, "forget", "show", "fs_000000000000", check=False)
    assert code == 1 and out["error"]["code"] == "not_found"
