"""Fine-tune the TOFU target and retain-reference LoRA adapters of the embedded model.

target = forget10 authors (TOFU full rows 3600-3999) + the first ``--retain-authors`` authors;
retain = the same retain authors only. Writes ``<out>/{target,retain}/`` (adapter_model.safetensors,
adapter_config.json, training_log.json), ``<out>/data_hashes.json`` and ROUGE-L before/after on
forget10 and retain questions (``<out>/{base,target,retain}/eval.json``).

    nice -n 19 .venv/bin/python scripts/finetune_tofu.py --models target retain --eval-base
    .venv/bin/python scripts/finetune_tofu.py --tiny --out /tmp/x   # pipeline check, ~1 min
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from evals.data import data_dir, tofu  # noqa: E402
from evals.finetune import LoraRecipe, finetune, load_adapter, rows_digest, save_adapter  # noqa: E402
from evals.metrics import rouge_l_recall  # noqa: E402
from evals.tofu_protocol import greedy_generate_fn  # noqa: E402
from steering.loading import EMBEDDED_MODEL, load_model  # noqa: E402

logger = logging.getLogger("finetune_tofu")
FORGET10 = (3600, 4000)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("artifacts/tofu-lora"))
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/models"))
    p.add_argument("--data", type=Path, help="benchmark data folder (default: the checkout's data/)")
    p.add_argument("--models", nargs="*", default=["target", "retain"], choices=["target", "retain"])
    p.add_argument("--eval-base", action="store_true", help="also measure the base model's ROUGE")
    p.add_argument("--retain-authors", type=int, default=40)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=4, help="evaluate every n-th forget10 row")
    p.add_argument("--eval-retain-every", type=int, default=20, help="every n-th retain training row")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--tiny", action="store_true", help="2 authors, 3 steps, 4 eval questions")
    return p.parse_args()


def datasets(args: argparse.Namespace) -> dict[str, Any]:
    full = tofu("full", args.data)
    forget_range = (3600, 3620) if args.tiny else FORGET10
    retain_range = (0, 20) if args.tiny else (0, 20 * args.retain_authors)
    forget, retain = full[slice(*forget_range)], full[slice(*retain_range)]
    return {"forget": forget, "retain": retain, "forget_range": forget_range, "retain_range": retain_range,
            "train": {"target": forget + retain, "retain": retain}}


def write_hashes(out: Path, data: dict[str, Any], root: Path | None) -> None:
    full_path = data_dir(root) / "tofu" / "full.jsonl"
    hashes = {
        "source": "data/tofu/full.jsonl",
        "source_sha256": hashlib.sha256(full_path.read_bytes()).hexdigest(),
        "row_digest": ("sha256 over json.dumps(row, ensure_ascii=False) + '\\n' per row, in dataset order "
                       "(training shuffles them with the recipe seed)"),
        "forget_rows": list(data["forget_range"]),
        "retain_rows": list(data["retain_range"]),
        "forget_sha256": rows_digest(data["forget"]),
        "retain_sha256": rows_digest(data["retain"]),
        "target": {"rows": "forget_rows then retain_rows", "n": len(data["train"]["target"]),
                   "sha256": rows_digest(data["train"]["target"])},
        "retain": {"rows": "retain_rows", "n": len(data["train"]["retain"]),
                   "sha256": rows_digest(data["train"]["retain"])},
    }
    (out / "data_hashes.json").write_text(json.dumps(hashes, indent=2) + "\n")


def rouge_eval(model: Any, tokenizer: Any, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    every = 5 if args.tiny else args.eval_every
    sets = {"forget10": data["forget"][::every], "retain_train": data["retain"][::args.eval_retain_every]}
    gen = greedy_generate_fn(model, tokenizer, max_new_tokens=args.max_new_tokens)
    out: dict[str, Any] = {}
    for name, rows in sets.items():
        t0 = time.perf_counter()
        answers = gen([r["question"] for r in rows])
        scores = [rouge_l_recall(a, r["answer"]) for a, r in zip(answers, rows, strict=True)]
        out[name] = {"n": len(rows), "rouge_l_recall": sum(scores) / len(scores), "per_row": scores,
                     "seconds": time.perf_counter() - t0, "examples": answers[:3]}
        logger.info("%s ROUGE-L recall %.3f (n=%d, %.0f s)", name, out[name]["rouge_l_recall"], len(rows),
                    out[name]["seconds"])
    return out


def versions() -> dict[str, str]:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def train_one(name: str, data: dict[str, Any], recipe: LoraRecipe, args: argparse.Namespace) -> None:
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    lm = load_model(EMBEDDED_MODEL, cache_dir=args.cache_dir)
    rows = data["train"][name]
    logger.info("training %s on %d rows: %s", name, len(rows), recipe)

    def on_step(step: int, loss: float) -> None:
        if step % 10 == 0:
            logger.info("%s step %d loss %.4f", name, step, loss)

    result = finetune(lm.model, lm.tokenizer, rows, recipe, on_step=on_step)
    save_adapter(result.model, folder, base_model=EMBEDDED_MODEL)
    log = {"model": name, "base_model": EMBEDDED_MODEL, "n_rows": len(rows), "argv": sys.argv[1:],
           "threads": torch.get_num_threads(), "nice": os.nice(0), "loadavg_1min_end": os.getloadavg()[0],
           "versions": versions(), **result.log()}
    (folder / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    logger.info("%s: %d steps in %.0f s, final loss %.4f", name, len(result.losses),
                result.wall_seconds, result.losses[-1])
    fresh = load_model(EMBEDDED_MODEL, cache_dir=args.cache_dir)  # measure what was saved
    merged = load_adapter(fresh.model, folder)
    scores = rouge_eval(merged, fresh.tokenizer, data, args)
    (folder / "eval.json").write_text(json.dumps(scores, indent=1) + "\n")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = datasets(args)
    write_hashes(args.out, data, args.data)
    recipe = LoraRecipe(rank=args.rank, alpha=args.alpha, lr=args.lr, batch_size=args.batch_size,
                        epochs=1.0 if args.tiny else args.epochs, seed=args.seed,
                        warmup_steps=1 if args.tiny else args.warmup,
                        max_steps=3 if args.tiny else args.max_steps)
    if args.eval_base:
        lm = load_model(EMBEDDED_MODEL, cache_dir=args.cache_dir)
        (args.out / "base").mkdir(exist_ok=True)
        (args.out / "base" / "eval.json").write_text(
            json.dumps(rouge_eval(lm.model, lm.tokenizer, data, args), indent=1) + "\n")
    for name in args.models:
        train_one(name, data, recipe, args)


if __name__ == "__main__":
    main()
