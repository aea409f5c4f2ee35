"""The ``guardit`` CLI end to end, as a user runs it: real model, real SQLite registry, --json output, and
the same commands against a running server (``GUARDIT_URL``)."""

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


REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python -m service.cli ARGS`` with stdout and stderr captured (pipes, not a terminal)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIT_")}  # only what the test sets
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          env={**clean, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "GUARDIT_DTYPE": "float32",
                               **(env or {})},
                          cwd=cwd, timeout=1200)


def guardit(data_dir: Path, *args: str, check: bool = True, stderr: list[str] | None = None) -> tuple[int, Any]:
    proc = run_cli(*args, "--json", env={"GUARDIT_DATA_DIR": str(data_dir)})
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, found {proc.stdout!r} (stderr {proc.stderr[-2000:]})"
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    if stderr is not None:
        stderr.append(proc.stderr)
    return proc.returncode, json.loads(lines[0])


def registry_state(data_dir: Path) -> tuple[list[str], int]:
    """Ids of every forget set and the audit length, read straight from the SQLite file."""
    with Registry.for_data_dir(data_dir) as registry:
        return [r.id for r in registry.list()], len(registry.audit(limit=10_000))


def test_forget_add_builds_and_the_set_steers_generation_until_revoked(data_dir: Path, tmp_path: Path) -> None:
    forget = tmp_path / "basil.jsonl"
    rows = [json.loads(line) for line in (DATA / "tofu" / "forget01.jsonl").read_text().splitlines()][:20]
    forget.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    notes: list[str] = []
    _, record = guardit(data_dir, "forget", "add", "--name", "basil", "--file", str(forget),
                        "--reason", "RTBF test", "--requested-by", "tester", stderr=notes)
    assert record["status"] == "active"
    # Progress reaches a pipe too, not only a terminal: what was read, where, each build phase, the outcome.
    assert f"using local registry in {data_dir}" in notes[0]
    assert "read 20 QA pairs from basil.jsonl" in notes[0]
    assert "build: forget documents 20/20" in notes[0] and "build: retain documents" in notes[0]
    assert f"{record['id']} active after" in notes[0]
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
    assert after["guardit"] == {"steered": False, "matched": [], "rechecked": False, "abstained": False,
                                "abstain_reason": None}
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
    assert code == 2  # invalid input (service.errors exit codes)
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
    assert code == 2 and out["error"]["field"] == field
    assert registry_state(data_dir) == before


def test_unknown_forget_set_id_is_a_not_found_error(data_dir: Path) -> None:
    code, out = guardit(data_dir, "forget", "show", "fs_000000000000", check=False)
    assert code == 3 and out["error"]["code"] == "not_found"


# -- one registry per user ----------------------------------------------------------------------------
def test_the_default_registry_is_per_user_not_per_folder(tmp_path: Path) -> None:
    xdg, folder_a, folder_b = tmp_path / "xdg", tmp_path / "a", tmp_path / "b"
    folder_a.mkdir()
    folder_b.mkdir()
    env = {"XDG_DATA_HOME": str(xdg)}  # and no GUARDIT_DATA_DIR
    first = run_cli("forget", "list", env=env, cwd=folder_a)
    second = run_cli("forget", "list", env=env, cwd=folder_b)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert f"using local registry in {xdg / 'guardit'}" in first.stderr
    assert first.stderr == second.stderr and first.stdout == "no forget sets\n"
    assert (xdg / "guardit" / "registry.db").exists()
    assert not list(folder_a.iterdir()) and not list(folder_b.iterdir())  # nothing created where we stood


# -- file formats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, kind, first", [
    ("qa.csv", "question,answer\nWho wrote Hamlet?,William Shakespeare\n\"Where, exactly?\",Stratford\n",
     "qa", {"question": "Who wrote Hamlet?", "answer": "William Shakespeare"}),
    ("docs.csv", "id,text\n1,Pellucid the tortoise repairs clocks.\n2,It lives in Ghent.\n", "documents",
     "Pellucid the tortoise repairs clocks."),
    ("qa.tsv", "Answer\tQuestion\nStratford\tWhere was he born?\nLondon\tWhere did he work?\n", "qa",
     {"question": "Where was he born?", "answer": "Stratford"}),
    ("docs.txt", "first line\n\nsecond line\n", "documents", "first line"),
])
def test_dry_run_shows_what_each_format_holds_and_registers_nothing(
        data_dir: Path, tmp_path: Path, name: str, content: str, kind: str, first: Any) -> None:
    path = tmp_path / name
    path.write_text(content)
    before = registry_state(data_dir)
    _, out = guardit(data_dir, "forget", "add", "--name", "x", "--file", str(path), "--dry-run",
                     "--subject", "William Shakespeare")
    assert out["dry_run"] is True and out["kind"] == kind and out["n_documents"] == 2
    assert out["first"][0] == first  # the header row is never a document
    unit = "QA pairs" if kind == "qa" else "documents"
    assert out["read"] == f"2 {unit} from {name}"
    assert out["would_register"]["subjects"] == ["William Shakespeare"]
    assert registry_state(data_dir) == before


@pytest.mark.parametrize("name, content, needle", [
    ("noheader.csv", "Who wrote Hamlet?,William Shakespeare\n", "expected a header row naming the columns"),
    ("forget.docx", "binary", "expected a forget file in JSONL"),
    ("empty.csv", "question,answer\n", "expected at least one row under the header"),
])
def test_unsupported_or_headerless_files_are_refused_clearly(
        data_dir: Path, tmp_path: Path, name: str, content: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    before = registry_state(data_dir)
    code, out = guardit(data_dir, "forget", "add", "--name", "x", "--file", str(path), check=False)
    assert code == 2 and needle in out["error"]["message"] and out["error"]["field"] == "file"
    assert registry_state(data_dir) == before


def test_subjects_given_on_the_command_line_are_stored(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("Pellucid the tortoise repairs clocks in Ghent.\n")
    _, record = guardit(data_dir, "forget", "add", "--name", "pellucid", "--file", str(path), "--no-build",
                        "--subject", "Pellucid", "--subject", "the Ghent tortoise")
    assert record["status"] == "pending" and record["subjects"] == ["Pellucid", "the Ghent tortoise"]
    _, revoked = guardit(data_dir, "forget", "revoke", record["id"], "--reason", "test cleanup")
    assert revoked["status"] == "revoked"


# -- truthful output ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needles", [
    (["forget", "--help"], ["add", "wait", "list", "show", "revoke"]),
    (["forget", "add", "--help"], ["(default: 1800.0)", ".csv", "--dry-run", "--subject"]),
    (["forget", "wait", "--help"], ["(default: 1.0)"]),
    (["serve", "--help"], ["GUARDIT_HOST, else 127.0.0.1", "GUARDIT_PORT, else 8000"]),
    (["generate", "--help"], ["(default: 128)", "(default: 0.0)"]),
    (["gate", "--help"], ["--file"]),
    (["--help"], ["guardit"]),
])
def test_every_command_documents_its_defaults(argv: list[str], needles: list[str]) -> None:
    proc = run_cli(*argv)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for needle in needles:
        assert needle in text, (needle, proc.stdout)


# -- against a running server -----------------------------------------------------------------------------
TORTOISE = "Pellucid the tortoise repairs clocks in the old town of Ghent."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.service.live_server import running

    with running(tmp_path_factory.mktemp("cli-server")) as live:
        yield live


def remote(server: Any, scope: str, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.service.live_server import KEYS

    return run_cli(*args, env={"GUARDIT_URL": server.base_url, "GUARDIT_API_KEY": KEYS[scope],
                               "GUARDIT_DATA_DIR": str(server.data_dir / "not-used")})


def test_with_a_server_the_cli_registers_at_once_and_follows_the_build(server: Any, tmp_path: Path) -> None:
    forget = tmp_path / "tortoise.txt"
    forget.write_text(TORTOISE + "\n")
    added = remote(server, "forget", "forget", "add", "--name", "cli-remote", "--file", str(forget),
                   "--alpha", "0.5", "--reason", "remote test")
    assert added.returncode == 0, added.stderr
    assert f"using server {server.base_url}" in added.stderr and "read 1 document from tortoise.txt" in added.stderr
    fs_id = added.stdout.split()[0]
    assert f"follow the build: guardit forget wait {fs_id}" in added.stdout
    assert not (server.data_dir / "not-used").exists()  # nothing local was opened

    waited = remote(server, "forget", "forget", "wait", fs_id, "--json", "--poll", "0.2")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "active" and f"{fs_id} active after" in waited.stderr
    assert server.status(fs_id) == "active"

    gate = remote(server, "admin", "gate", TORTOISE)
    assert gate.returncode == 0, gate.stderr
    assert gate.stdout.startswith("OPEN") and f"{fs_id} (cli-remote) cluster 0  similarity 1.000" in gate.stdout
    scoped = remote(server, "compare", "gate", TORTOISE)  # this key may not read set names: the id stays
    assert f"        {fs_id} cluster 0  similarity 1.000" in scoped.stdout

    revoked = remote(server, "forget", "forget", "revoke", fs_id, "--reason", "withdrawn by the test")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoke reason  withdrawn by the test" in revoked.stdout
    assert "registered for remote test" in revoked.stdout  # the registration reason, labelled as such
    assert server.audit(fs_id)[-1]["reason"] == "withdrawn by the test"


def test_local_generation_goes_through_the_servers_engine(server: Any) -> None:
    fs_id = server.register({"name": "engine-check", "documents": [TORTOISE], "reason": "test",
                             "requested_by": "tests", "alpha": 0.5})
    server.wait_status(fs_id)
    body = {"prompt": TORTOISE, "max_new_tokens": 12}
    # An admin key sees the gate's decision, as the local CLI (the registry's owner) does.
    served = server.request("POST", "/v1/generate", "admin", json=body).json()
    local = run_cli("generate", "--max-new-tokens", "12", "--json", TORTOISE,
                    env={"GUARDIT_DATA_DIR": str(server.data_dir)})  # the server's registry, no GUARDIT_URL
    assert local.returncode == 0, local.stderr
    assert f"using local registry in {server.data_dir}" in local.stderr
    assert json.loads(local.stdout) == served and served["guardit"]["steered"] is True
    via_server = remote(server, "admin", "generate", "--max-new-tokens", "12", "--json", TORTOISE)
    assert json.loads(via_server.stdout) == served
    hidden = remote(server, "generate", "generate", "--max-new-tokens", "12", "--json", TORTOISE)
    assert json.loads(hidden.stdout) == {k: v for k, v in served.items() if k != "guardit"}
    server.revoke(fs_id)


def test_a_bad_key_is_reported_with_the_servers_error(server: Any) -> None:
    proc = run_cli("forget", "list", "--json", env={"GUARDIT_URL": server.base_url, "GUARDIT_API_KEY": "x" * 20})
    assert proc.returncode == 6  # exit code of an unauthorised caller (service.errors)
    assert json.loads(proc.stdout)["error"]["code"] == "unauthorized"
