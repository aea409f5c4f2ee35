"""``guardit``: the command line, a second front door onto the same runtime and registry (SPEC.md)."""

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

from service.registry import RegistryError
from service.schemas import compare_response, forget_set_response, gate_response, generate_response
from service.settings import Settings, get_settings
from steering import SamplingParams, SteeringError, read_forget_file
from steering.forget_set import ForgetDocuments
from steering.recheck import generate_reviewed

logger = logging.getLogger(__name__)


class CliError(Exception):
    """A user-facing error: printed, exit status 1."""

    def __init__(self, message: str, *, code: str = "invalid_request", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    if getattr(args, "model", None):
        settings = settings.model_copy(update={"model": args.model})
    return settings


def _runtime(args: argparse.Namespace) -> Any:
    from service.runtime import Runtime

    return Runtime(_settings(args))


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: Callable[[], None]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        human()


def _progress_bar(args: argparse.Namespace) -> Callable[[str, int, int], None] | None:
    if args.json or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage} documents", unit="doc", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


# -- forget -------------------------------------------------------------------------------------
def cmd_forget_add(args: argparse.Namespace) -> int:
    from service.runtime import Registration

    runtime = _runtime(args)
    settings = runtime.settings
    docs: ForgetDocuments = read_forget_file(Path(args.file), max_documents=settings.max_forget_documents)
    retain = None
    if args.retain:
        stored = read_forget_file(Path(args.retain), max_documents=settings.max_forget_documents)
        retain = stored.gate_texts()
    reg = Registration(
        name=args.name, documents=list(docs.documents) if docs.kind == "documents" else None,
        qa=[(p.question, p.answer) for p in docs.qa] if docs.kind == "qa" else None, retain=retain,
        reason=args.reason, requested_by=args.requested_by, ticket=args.ticket, layer=args.layer,
        threshold=args.threshold, alpha=args.alpha)
    record = runtime.register(reg, actor=_actor())
    if not args.no_build:
        record = _build_until_done(runtime, record.id, args)
    payload = forget_set_response(record.to_dict()).model_dump()
    _emit(args, payload, lambda: _print_record(payload))
    return 0 if payload["status"] in {"active", "pending", "building"} else 1


def _build_until_done(runtime: Any, fs_id: str, args: argparse.Namespace) -> Any:
    """Build pending sets here; if a server claimed ours, wait for its outcome."""
    progress = _progress_bar(args)
    deadline = time.monotonic() + args.wait_timeout
    while True:
        record = runtime.registry.get(fs_id)
        if record.status in {"active", "failed", "revoked"}:
            return record
        if runtime.build_next(actor=_actor(), progress=progress) is None:
            if time.monotonic() > deadline:
                return record
            time.sleep(0.5)


def _print_record(p: dict[str, Any]) -> None:
    lines = [f"{p['id']}  {p['name']}  [{p['status']}]"]
    for key in ("n_documents", "n_clusters", "silhouette", "layer", "threshold", "alpha", "reason",
                "requested_by", "ticket", "created_at", "activated_at", "revoked_at", "error"):
        if p.get(key) is not None:
            lines.append(f"  {key:<13} {p[key]}")
    sys.stdout.write("\n".join(lines) + "\n")


def cmd_forget_list(args: argparse.Namespace) -> int:
    from service.registry import Registry

    settings = _settings(args)
    registry = Registry.for_data_dir(settings.data_dir, settings.database_url)
    records = [forget_set_response(r.to_dict()).model_dump() for r in registry.list(status=args.status)]

    def human() -> None:
        if not records:
            sys.stdout.write("no forget sets\n")
        for r in records:
            sys.stdout.write(f"{r['id']}  {r['status']:<8} docs={r['n_documents']:<5} k={r['n_clusters']}  {r['name']}\n")

    _emit(args, {"forget_sets": records}, human)
    return 0


def cmd_forget_show(args: argparse.Namespace) -> int:
    from service.registry import Registry

    settings = _settings(args)
    registry = Registry.for_data_dir(settings.data_dir, settings.database_url)
    payload = forget_set_response(registry.get(args.id).to_dict()).model_dump()
    _emit(args, payload, lambda: _print_record(payload))
    return 0


def cmd_forget_revoke(args: argparse.Namespace) -> int:
    from service.registry import Registry

    settings = _settings(args)
    registry = Registry.for_data_dir(settings.data_dir, settings.database_url)
    payload = forget_set_response(registry.revoke(args.id, reason=args.reason, actor=_actor()).to_dict()).model_dump()
    _emit(args, payload, lambda: _print_record(payload))
    return 0


# -- generate / gate ----------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    limit = runtime.settings.max_new_tokens
    if not 1 <= args.max_new_tokens <= limit:
        raise CliError(f"expected --max-new-tokens in [1, {limit}], found {args.max_new_tokens}",
                       field="max_new_tokens")
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, seed=args.seed)
    prompt = [{"role": "user", "content": args.prompt}]
    guard = runtime.guard
    state = guard.state
    if runtime.settings.answer_recheck:  # as the server answers a non-streamed request
        steered = generate_reviewed(guard, [prompt], params, state=state)[0]
    else:
        steered = guard.generate([prompt], params, steer=True, state=state)[0]
    if not args.ab:
        payload = generate_response(steered).model_dump()
        _emit(args, payload, lambda: sys.stdout.write(steered.text + "\n"))
        return 0
    unsteered = guard.generate([prompt], params, steer=False, state=state)[0]
    payload = compare_response(steered, unsteered).model_dump()

    def human() -> None:
        matched = ", ".join(f"{m['forget_set_id']}#{m['cluster']} ({m['similarity']:.3f})" for m in payload["matched"])
        how = "OPEN on the answer (re-checked) " if steered.rechecked else "OPEN "
        sys.stdout.write(f"gate: {how + matched if matched else 'closed (identical to the base model)'}\n")
        sys.stdout.write(f"--- steered\n{steered.text}\n--- unsteered\n{unsteered.text}\n")

    _emit(args, payload, human)
    return 0


def _read_prompts(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"expected a readable UTF-8 file at {path}, found: {exc}", field="file") from exc
    lines = [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    if path.suffix.lower() not in {".jsonl", ".json", ".ndjson"}:
        return [line.strip() for _, line in lines]
    prompts = []
    for n, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path.name} line {n}: expected a JSON object, found invalid JSON ({exc.msg})",
                           field="file") from exc
        text = obj.get("prompt", obj.get("question")) if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise CliError(f"{path.name} line {n}: expected a string 'prompt' or 'question' field", field="file")
        prompts.append(text)
    return prompts


def cmd_gate(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.file is None):
        raise CliError("expected exactly one of PROMPT or --file", field="prompt")
    runtime = _runtime(args)
    prompts = [args.prompt] if args.prompt is not None else _read_prompts(Path(args.file))
    results = [gate_response(m).model_dump() for m in runtime.guard.gate(prompts)]
    payload = results[0] if args.prompt is not None else {"results": results}

    def human() -> None:
        for prompt, r in zip(prompts, results, strict=True):
            tag = "OPEN  " if r["steered"] else "closed"
            best = max((m["similarity"] for m in r["matched"]), default=None)
            sys.stdout.write(f"{tag} {'' if best is None else f'{best:.3f} '}{prompt[:100]}\n")

    _emit(args, payload, human)
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
    serve(settings)
    return 0


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``guardit`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    common.add_argument("--model", help="override GUARDIT_MODEL")
    parser = argparse.ArgumentParser(prog="guardit", description="Inference-time unlearning (GUARD-IT) for LLMs")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="start the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    forget = sub.add_parser("forget", help="register, list, show, revoke forget sets")
    fsub = forget.add_subparsers(dest="forget_command", required=True)
    add = fsub.add_parser("add", parents=[common], help="register a forget set from a file and build it")
    add.add_argument("--name", required=True)
    add.add_argument("--file", required=True, help="JSONL of {text} or {question, answer}; .txt one per line")
    add.add_argument("--retain", help="retain texts (same formats)")
    add.add_argument("--reason", default="registered from the command line")
    add.add_argument("--requested-by", default=_actor().split(":", 1)[1])
    add.add_argument("--ticket")
    add.add_argument("--layer", type=int)
    add.add_argument("--threshold", type=float)
    add.add_argument("--alpha", type=float)
    add.add_argument("--no-build", action="store_true", help="leave it pending for a running server to build")
    add.add_argument("--wait-timeout", type=float, default=600.0, help="seconds to wait for a server's build")
    add.set_defaults(func=cmd_forget_add)
    lst = fsub.add_parser("list", parents=[common])
    lst.add_argument("--status", choices=["pending", "building", "active", "failed", "revoked"])
    lst.set_defaults(func=cmd_forget_list)
    show = fsub.add_parser("show", parents=[common])
    show.add_argument("id")
    show.set_defaults(func=cmd_forget_show)
    revoke = fsub.add_parser("revoke", parents=[common])
    revoke.add_argument("id")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(func=cmd_forget_revoke)

    gen = sub.add_parser("generate", parents=[common], help="one generation with every active forget set")
    gen.add_argument("prompt")
    gen.add_argument("--ab", action="store_true", help="print the steered and the unsteered answer")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int)
    gen.set_defaults(func=cmd_generate)

    ev = sub.add_parser("eval", parents=[common], help="unlearning evaluation: report.json, report.md, plots")
    from evals import cli as eval_cli

    eval_cli.add_arguments(ev)
    ev.set_defaults(func=cmd_eval)

    gate = sub.add_parser("gate", parents=[common], help="the gate decision without generating")
    gate.add_argument("prompt", nargs="?")
    gate.add_argument("--file", help="JSONL with a prompt or question field per line, or text one per line")
    gate.set_defaults(func=cmd_gate)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``guardit`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        _quiet_libraries()
    try:
        return int(args.func(args))
    except (CliError, SteeringError, RegistryError) as exc:
        field = getattr(exc, "field", None)
        code = getattr(exc, "code", None) or _error_code(exc)
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": {"code": code, "message": str(exc), "field": field}}) + "\n")
        else:
            sys.stderr.write(f"guardit: error: {exc}\n")
        return 1
    except ValueError as exc:  # pydantic settings errors
        sys.stderr.write(f"guardit: error: {exc}\n")
        return 1


def _error_code(exc: Exception) -> str:
    name = type(exc).__name__
    return {"NotFoundError": "not_found", "UnknownForgetSetError": "not_found",
            "InvalidTransitionError": "conflict"}.get(name, "invalid_request")


if __name__ == "__main__":
    raise SystemExit(main())
