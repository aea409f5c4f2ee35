"""``guardit``: the command line, a second front door onto the same registry and engine (SPEC.md).

With ``GUARDIT_URL`` (or ``--url``) every command talks to that server; otherwise it works in this
process on the local registry (``GUARDIT_DATA_DIR``) through the server's ``Runtime`` and ``Engine``.
Each command says on stderr which of the two it uses.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from service.cli_backend import CliError, LocalBackend, RemoteBackend, open_backend, where
from service.cli_input import FORMATS, describe, read_forget_input, read_prompts
from service.cli_output import build_progress, build_state, note, print_answer, print_gate, print_record
from service.db_models import FINAL, STATUSES
from service.errors import EXIT_INVALID, error_body, exit_code_for, exit_code_for_code
from service.generation import EngineError
from service.registry import RegistryError
from service.settings import Settings, get_settings
from steering import SteeringError

logger = logging.getLogger(__name__)

Backend = LocalBackend | RemoteBackend


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    updates = {k: getattr(args, k) for k in ("model", "url", "api_key") if getattr(args, k, None)}
    return settings.model_copy(update=updates) if updates else settings


def _backend(args: argparse.Namespace) -> Backend:
    return open_backend(_settings(args))


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], None]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        human()


def _names(backend: Backend) -> Callable[[str], str]:
    """Forget-set id -> name, looked up once per id ("" when the key may not read forget sets)."""
    cache: dict[str, str] = {}

    def name_of(fs_id: str) -> str:
        if fs_id not in cache:
            try:
                cache[fs_id] = str(backend.get(fs_id).get("name", ""))
            except (CliError, RegistryError):
                cache[fs_id] = ""
        return cache[fs_id]

    return name_of


# -- forget -------------------------------------------------------------------------------------
def _registration(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], str]:
    path = Path(args.file)
    docs = read_forget_input(path, max_documents=settings.max_forget_documents,
                             max_chars=settings.max_document_chars)
    body: dict[str, Any] = {"name": args.name, "reason": args.reason, "requested_by": args.requested_by}
    if docs.kind == "qa":
        body["qa"] = [{"question": p.question, "answer": p.answer} for p in docs.qa]
    else:
        body["documents"] = list(docs.documents)
    what = describe(docs, path)
    if args.retain:
        retain = read_forget_input(Path(args.retain), max_documents=settings.max_forget_documents,
                                   max_chars=settings.max_document_chars)
        body["retain"] = retain.gate_texts()
        what += f" (retain: {describe(retain, Path(args.retain))})"
    for key in ("ticket", "layer", "threshold", "alpha"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.subject:
        body["subjects"] = list(args.subject)
    return body, what


def cmd_forget_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    body, what = _registration(args, settings)
    backend = _backend(args)
    if args.dry_run:
        return _dry_run(args, body, what, backend)
    note(f"read {what}")
    created = backend.register(dict(body), actor=_actor())
    if isinstance(backend, RemoteBackend):
        if args.json:  # stdout holds the 202 body only; the hint still reaches the user
            note(f"the server builds it; follow the build: guardit forget wait {created['id']}")
        def queued() -> None:
            sys.stdout.write(f"{created['id']}  {args.name}  [{created['status']}]: {what}; the server builds it\n"
                             f"follow the build: guardit forget wait {created['id']}\n")

        _emit(args, created, queued)
        return 0
    if args.no_build:
        def pending() -> None:
            print_record(created)
            sys.stdout.write(f"left pending; build it here or follow a server's build: "
                             f"guardit forget wait {created['id']}\n")

        _emit(args, created, pending)
        return 0
    return _follow(args, backend, created["id"])


def _dry_run(args: argparse.Namespace, body: dict[str, Any], what: str, backend: Backend) -> int:
    items = body.get("qa") or body.get("documents") or []
    would = {k: v for k, v in body.items() if k not in {"qa", "documents", "retain"}}
    first: list[Any] = list(items[:3])
    payload: dict[str, Any] = {"dry_run": True, "read": what, "would_register": would,
                               "kind": "qa" if "qa" in body else "documents", "n_documents": len(items),
                               "n_retain": len(body.get("retain") or []), "first": first,
                               "target": backend.where()}

    def human() -> None:
        sys.stdout.write(f"dry run: nothing registered. Would register {args.name!r}: {what}\n")
        for key, value in would.items():
            if key != "name":
                sys.stdout.write(f"  {key:<13} {value}\n")
        for item in first:
            text = f"{item['question']} -> {item['answer']}" if isinstance(item, dict) else item
            sys.stdout.write(f"  e.g.          {text[:120]}\n")

    _emit(args, payload, human)
    return 0


def _follow(args: argparse.Namespace, backend: Backend, fs_id: str) -> int:
    """Wait for a build to end (building it here when working locally); prints the final record."""
    started = time.monotonic()
    seen: list[str] = []

    def on_poll(record: dict[str, Any]) -> None:
        state = build_state(record)
        if not seen or seen[-1] != state:
            seen.append(state)
            note(f"{fs_id} {state}")

    if isinstance(backend, LocalBackend):
        note(f"building {fs_id} in this process (loading the model first)")
        record = backend.build(fs_id, actor=_actor(), timeout_s=args.timeout, on_poll=on_poll,
                               progress=build_progress(sys.stderr.isatty() and not args.json))
    else:
        deadline = started + args.timeout
        while (record := backend.get(fs_id))["status"] not in FINAL and time.monotonic() < deadline:
            on_poll(record)
            time.sleep(args.poll)
    if record["status"] in FINAL:
        note(f"{fs_id} {record['status']} after {time.monotonic() - started:.1f} s")
    else:
        note(f"{fs_id} still {build_state(record)} after {args.timeout:g} s; "
             f"run `guardit forget wait {fs_id}` again")
    _emit(args, record, lambda: print_record(record))
    return 0 if record["status"] == "active" else 1


def cmd_forget_wait(args: argparse.Namespace) -> int:
    return _follow(args, _backend(args), args.id)


def cmd_forget_list(args: argparse.Namespace) -> int:
    records = _backend(args).list(args.status)

    def human() -> None:
        if not records:
            sys.stdout.write("no forget sets\n")
        for r in records:
            sys.stdout.write(f"{r['id']}  {build_state(r):<8} docs={r['n_documents']:<5} "
                             f"k={r['n_clusters']}  {r['name']}\n")

    _emit(args, {"forget_sets": records}, human)
    return 0


def cmd_forget_show(args: argparse.Namespace) -> int:
    payload = _backend(args).get(args.id)
    _emit(args, payload, lambda: print_record(payload))
    return 0


def cmd_forget_revoke(args: argparse.Namespace) -> int:
    payload = _backend(args).revoke(args.id, args.reason, actor=_actor())
    _emit(args, payload, lambda: print_record(payload, revoke_reason=args.reason))
    return 0


# -- generate / gate ----------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    backend = _backend(args)
    body: dict[str, Any] = {"prompt": args.prompt, "max_new_tokens": args.max_new_tokens,
                            "temperature": args.temperature, "top_p": args.top_p}
    if args.seed is not None:
        body["seed"] = args.seed
    payload = backend.generate(body, ab=args.ab)
    _emit(args, payload, lambda: print_answer(payload, _names(backend)))
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.file is None):
        raise CliError("expected exactly one of PROMPT or --file", field="prompt")
    prompts = [args.prompt] if args.prompt is not None else read_prompts(Path(args.file))
    backend = _backend(args)
    results = backend.gate(prompts)
    payload = results[0] if args.prompt is not None else {"results": results}
    _emit(args, payload, lambda: print_gate(prompts, results, _names(backend)))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evals import cli as eval_cli

    settings = _settings(args)
    args.model, args.embedder, args.cache_dir = settings.model, settings.embedder, settings.model_cache_dir
    return eval_cli.run(args)



def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import serve

    updates = {k: v for k, v in (("host", args.host), ("port", args.port), ("model", args.model)) if v}
    settings = Settings(**{**get_settings().model_dump(), **updates})
    serve(settings)  # its log (JSON lines) names the registry; /readyz shows the data dir
    return 0


# -- parser -------------------------------------------------------------------------------------
class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to options with a value default and no default named in their help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's ``--help`` shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Defaults)
        super().__init__(*args, **kwargs)


def _env_default(name: str) -> str:
    field = Settings.model_fields[name]
    factory = field.default_factory
    default = factory() if factory is not None else field.default  # type: ignore[call-arg]
    return f"GUARDIT_{name.upper()}, else {default}"


def build_parser() -> argparse.ArgumentParser:
    """The ``guardit`` argument parser."""
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    common.add_argument("--model", help=f"the LLM (default: {_env_default('model')})")
    common.add_argument("--url", help="talk to this guardit server (default: GUARDIT_URL; unset = work "
                        "locally on the registry in GUARDIT_DATA_DIR)")
    common.add_argument("--api-key", help="bearer key for --url (default: GUARDIT_API_KEY)")
    parser = _Parser(prog="guardit", description="Inference-time unlearning (GUARD-IT) for LLMs. Without "
                     "GUARDIT_URL every command works on the local registry "
                     f"(GUARDIT_DATA_DIR, default {_env_default('data_dir').split(', else ')[1]}).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", parents=[common], help="start the HTTP server")
    serve.add_argument("--host", help=f"bind address (default: {_env_default('host')})")
    serve.add_argument("--port", type=int, help=f"bind port (default: {_env_default('port')})")
    serve.set_defaults(func=cmd_serve)

    forget = sub.add_parser("forget", help="register, list, show, follow and revoke forget sets",
                            description="Forget sets: register (add), follow a build (wait), list, show, "
                            "revoke.")
    fsub = forget.add_subparsers(dest="forget_command", required=True, parser_class=_Parser)
    add = fsub.add_parser("add", parents=[common], help="register a forget set from a file",
                          description=f"Register a forget set from FILE: {FORMATS}. Locally the set is built "
                          "in this process (progress on stderr); with a server it is built there and the "
                          "command returns at once (follow it with `guardit forget wait ID`).")
    add.add_argument("--name", required=True, help="a name for people (need not be unique)")
    add.add_argument("--file", required=True, help="the forget documents: " + FORMATS)
    add.add_argument("--retain", help="texts to keep answering (same formats; default a built-in neutral "
                     "corpus)")
    add.add_argument("--subject", action="append", metavar="NAME",
                     help="a name the set protects, e.g. the person (repeatable; default: mined from the "
                     "file)")
    add.add_argument("--reason", default="registered from the command line", help="why (audited)")
    add.add_argument("--requested-by", default=_actor().split(":", 1)[1], help="for whom (audited)")
    add.add_argument("--ticket", help="external reference (audited)")
    add.add_argument("--layer", type=int, help="decoder block to steer (default: first quartile)")
    add.add_argument("--threshold", type=float, help="gate threshold T (default: GUARDIT_DEFAULT_THRESHOLD)")
    add.add_argument("--alpha", type=float, help="strength (default: calibrated at build time)")
    add.add_argument("--dry-run", action="store_true", help="read and check the file, print what would be "
                     "registered, register nothing")
    add.add_argument("--no-build", action="store_true", help="locally: leave it pending (a server on the "
                     "same registry, or `guardit forget wait ID`, builds it)")
    add.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the build")
    add.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    add.set_defaults(func=cmd_forget_add)
    wait = fsub.add_parser("wait", parents=[common], help="follow a build until the set is active or failed",
                           description="Follow a forget set's build (phase and progress on stderr) and print "
                           "the final record; exit 0 when active. Locally, a pending set is built here.")
    wait.add_argument("id", help="forget-set id, e.g. fs_0123456789ab")
    wait.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait")
    wait.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    wait.set_defaults(func=cmd_forget_wait)
    lst = fsub.add_parser("list", parents=[common], help="every forget set, newest first")
    lst.add_argument("--status", choices=STATUSES,
                     help="only sets in this status (default: all)")
    lst.set_defaults(func=cmd_forget_list)
    show = fsub.add_parser("show", parents=[common], help="one forget set")
    show.add_argument("id", help="forget-set id")
    show.set_defaults(func=cmd_forget_show)
    revoke = fsub.add_parser("revoke", parents=[common], help="stop steering for a set and delete its texts")
    revoke.add_argument("id", help="forget-set id")
    revoke.add_argument("--reason", required=True, help="why (audited)")
    revoke.set_defaults(func=cmd_forget_revoke)

    gen = sub.add_parser("generate", parents=[common], help="one generation with every active forget set")
    gen.add_argument("prompt", help="one user turn")
    gen.add_argument("--ab", action="store_true", help="print the steered and the unsteered answer")
    gen.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    gen.add_argument("--seed", type=int, help="sampling seed (default: random)")
    gen.set_defaults(func=cmd_generate)

    ev = sub.add_parser("eval", parents=[common], help="unlearning evaluation: report.json, report.md, plots")
    from evals import cli as eval_cli

    eval_cli.add_arguments(ev)
    ev.set_defaults(func=cmd_eval)

    gate = sub.add_parser("gate", parents=[common], help="the gate decision without generating")
    gate.add_argument("prompt", nargs="?", help="one user turn (or --file)")
    gate.add_argument("--file", help="JSONL with a prompt or question field per line, or text one per line")
    gate.set_defaults(func=cmd_gate)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``guardit`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Also for serve: its log is JSON lines (configure_logging replaces the handler set here), and a
    # library's progress bar on stderr would break them.
    _quiet_libraries()
    try:
        if args.command not in {"serve", "eval"}:
            note(f"using {where(_settings(args))}")
        return int(args.func(args))
    except (CliError, SteeringError, RegistryError, EngineError) as exc:
        if isinstance(exc, CliError):  # already a server's answer, or the CLI's own input check
            body: dict[str, Any] = {"error": {"code": exc.code, "message": str(exc), "field": exc.field}}
            status = exit_code_for_code(exc.code)
        else:
            body, status = error_body(exc), exit_code_for(exc)
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(body) + "\n")
        else:
            sys.stderr.write(f"guardit: error: {exc}\n")
        return status
    except ValueError as exc:  # pydantic settings errors
        sys.stderr.write(f"guardit: error: {exc}\n")
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
