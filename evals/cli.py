"""``guardit-eval``, also reachable as ``guardit eval``: run benchmarks, write the report (docs/SPEC.md).

The application's CLI adds these options to its own ``eval`` subcommand and fills in the model, the
embedder and the model cache from its settings; run alone, this module takes them as options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from steering.errors import SteeringError
from steering.loading import EMBEDDED_EMBEDDER, EMBEDDED_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation's own options (benchmarks, output, data folders), shared by both front doors."""
    parser.add_argument("--benchmark", action="append", help="run only this benchmark (repeatable); default all")
    parser.add_argument("--quick", action="store_true", help="CI-sized subset of every benchmark (docs/SPEC.md)")
    parser.add_argument("--out", default="guardit-eval", help="output folder")
    parser.add_argument("--data", type=Path, default=None,
                        help="benchmark data folder with tofu/, muse/, rwku/ (default: the checkout's data/)")
    parser.add_argument("--adapters", type=Path, default=None,
                        help="TOFU LoRA adapters folder (default: the checkout's artifacts/tofu-lora)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmarks and print the report (``report.md``, or ``report.json`` with ``--json``).

    ``args`` carries :func:`add_arguments`' options plus ``model``, ``embedder``, ``cache_dir`` and
    ``json``. Raises :class:`~steering.errors.SteeringError` on bad options or missing data.
    """
    from evals import report
    from steering.loading import load_embedder, resolve_model

    # Benchmarks run for minutes to an hour: their progress lines (INFO) go to stderr.
    logging.getLogger("evals").setLevel(logging.INFO)
    out = Path(args.out)
    result = report.run(args.benchmark, embedder=load_embedder(args.embedder),
                        model_id=resolve_model(args.model).model_id, quick=args.quick, out=out,
                        model_spec=args.model, cache_dir=Path(args.cache_dir), data_root=args.data,
                        adapters=args.adapters)
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write((out / "report.md").read_text(encoding="utf-8"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``guardit-eval`` argument parser."""
    parser = argparse.ArgumentParser(prog="guardit-eval", description="GUARD-IT unlearning evaluation")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--model", default=EMBEDDED_MODEL, help="embedded alias, local HF model dir, or .gguf")
    parser.add_argument("--embedder", default=EMBEDDED_EMBEDDER, help="the gate's sentence-transformer")
    parser.add_argument("--cache-dir", type=Path, default=Path("guardit-data") / "models",
                        help="where converted models are cached")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``guardit-eval`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except SteeringError as exc:
        if args.json:
            error = {"code": "invalid_request", "message": str(exc), "field": getattr(exc, "field", None)}
            sys.stdout.write(json.dumps({"error": error}) + "\n")
        else:
            sys.stderr.write(f"guardit-eval: error: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
