"""LoRA fine-tuning for the TOFU protocol (Maini et al. 2024, arXiv:2401.06121): the TOFU target and
retain reference models, and the gradient-ascent / gradient-difference baselines that GUARD-IT
(arXiv 2605.12765) is compared with. CPU, fp32, seeded; the QA encoding is the evaluation's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from evals.tofu_protocol import encode_qa

logger = logging.getLogger(__name__)

#: Every linear projection of a Llama block (attention and MLP).
LLAMA_PROJECTIONS: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraRecipe:
    """Hyper-parameters of one LoRA run (all of them are logged with the adapter)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS
    lr: float = 3e-3
    epochs: float = 3.0
    batch_size: int = 8
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None


#: Defaults for the unlearning baselines on the TOFU target (a short run on the forget set).
UNLEARN_RECIPE = LoraRecipe(rank=8, alpha=16, lr=1e-4, epochs=1.0, warmup_steps=0)


@dataclass
class TrainResult:
    """A trained model (PEFT-wrapped, eval mode) and how it got there."""

    model: Any
    recipe: LoraRecipe
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def log(self) -> dict[str, Any]:
        """JSON-ready training log (hyper-parameters, losses per step, timing)."""
        return {"recipe": asdict(self.recipe), "steps": len(self.losses), "losses": self.losses,
                "lrs": self.lrs, "step_seconds": self.step_seconds, "wall_seconds": self.wall_seconds}


def encode_training_row(tokenizer: Any, question: str, answer: str) -> tuple[list[int], list[bool]]:
    """``encode_qa`` plus the end-of-turn token; the mask marks the tokens that carry loss (the answer
    and the end of turn, so the model learns to stop)."""
    ids, n_prompt = encode_qa(tokenizer, question, answer)
    if tokenizer.eos_token_id is not None:
        ids = ids + [int(tokenizer.eos_token_id)]
    return ids, [i >= n_prompt for i in range(len(ids))]


def batch_tensors(rows: Sequence[tuple[list[int], list[bool]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask``, ``position_ids`` and ``loss_mask``, ``[batch, seq]``."""
    width = max(len(ids) for ids, _ in rows)
    out = {k: torch.zeros((len(rows), width), dtype=torch.long) for k in ("input_ids", "attention_mask")}
    out["input_ids"].fill_(pad_id)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (ids, mask) in enumerate(rows):
        out["input_ids"][r, width - len(ids):] = torch.tensor(ids)
        out["attention_mask"][r, width - len(ids):] = 1
        loss_mask[r, width - len(ids):] = torch.tensor(mask)
    out["position_ids"] = (out["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    out["loss_mask"] = loss_mask
    return out


def answer_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood over the loss-masked tokens of a batch (token-weighted).

    Rows are left-padded, so loss tokens sit at the end: only the last ``k`` positions get logits
    (the vocabulary projection over prompt tokens would be wasted work).
    """
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)  # [batch, seq]
    loss_mask = batch["loss_mask"].to(device)  # [batch, seq]
    has_loss = loss_mask.any(-1)  # [batch]
    if not bool(has_loss.any()):
        raise ValueError("expected at least one loss token in the batch, found none")
    first = max(1, int(loss_mask.int().argmax(-1)[has_loss].min()))  # the first token that carries loss
    keep = ids.shape[1] - first + 1  # logits at positions first-1 .. end-1 predict tokens first .. end
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device),
                   position_ids=batch["position_ids"].to(device),
                   logits_to_keep=keep).logits  # [batch, keep, vocab]
    target = loss_mask[:, first:]  # [batch, keep-1]
    picked = logits[:, :-1][target].float()  # [n_loss_tokens, vocab]
    return torch.nn.functional.cross_entropy(picked, ids[:, first:][target])


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           group: int = 16) -> list[list[int]]:
    """Shuffled batches of similar lengths (less padding): shuffle, sort within chunks of
    ``group`` batches, cut into batches, shuffle the batch order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def attach_lora(model: torch.nn.Module, recipe: LoraRecipe) -> Any:
    """Wrap ``model`` (in place) with a fresh, seeded LoRA adapter; only the adapter trains."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.seed)
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


#: One objective term: rows, their sign in the loss (+1 descent, -1 ascent).
Stream = tuple[Sequence[dict[str, str]], float]


def train_lora(model: torch.nn.Module, tokenizer: Any, streams: Sequence[Stream], recipe: LoraRecipe, *,
               on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a fresh LoRA adapter on ``sum(sign * NLL(batch of stream))``.

    The first stream sets the number of steps (``epochs`` passes over it, or ``max_steps``); the
    others are cycled alongside it with their own shuffles. Linear warm-up then linear decay to 0.
    """
    peft_model = attach_lora(model, recipe)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [[encode_training_row(tokenizer, r["question"], r["answer"]) for r in rows]
               for rows, _ in streams]
    rng = random.Random(recipe.seed)
    per_epoch = math.ceil(len(encoded[0]) / recipe.batch_size)
    total = recipe.max_steps or max(1, round(recipe.epochs * per_epoch))
    queues: list[list[list[int]]] = [[] for _ in streams]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        return max(0.0, (total - step) / max(1, total - recipe.warmup_steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    result = TrainResult(peft_model, recipe)
    started = time.perf_counter()
    peft_model.train()
    for step in range(total):
        t0 = time.perf_counter()
        loss = torch.zeros(())
        for s, rows in enumerate(encoded):
            sign = streams[s][1]
            if not queues[s]:
                queues[s] = length_grouped_batches([len(x[0]) for x in rows], recipe.batch_size, rng)
            batch = batch_tensors([rows[i] for i in queues[s].pop(0)], pad_id)
            loss = loss + sign * answer_nll(peft_model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        result.lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        result.losses.append(loss.item())
        result.step_seconds.append(time.perf_counter() - t0)
        if on_step is not None:
            on_step(step, result.losses[-1])
    peft_model.eval()
    result.wall_seconds = time.perf_counter() - started
    return result


def finetune(model: torch.nn.Module, tokenizer: Any, rows: Sequence[dict[str, str]],
             recipe: LoraRecipe = LoraRecipe(), **kwargs: Any) -> TrainResult:
    """Supervised LoRA fine-tune on QA rows (loss on answer tokens only): the TOFU target/retain model."""
    return train_lora(model, tokenizer, [(rows, 1.0)], recipe, **kwargs)


def gradient_ascent(model: torch.nn.Module, tokenizer: Any, forget_rows: Sequence[dict[str, str]],
                    recipe: LoraRecipe = UNLEARN_RECIPE, **kwargs: Any) -> TrainResult:
    """GA baseline (TOFU Sec. 4): maximise the NLL of the forget answers through a new LoRA adapter.

    ``model`` should be the TOFU target with its adapter merged (``load_adapter(..., merge=True)``);
    it is wrapped in place, so pass a fresh copy per baseline.
    """
    return train_lora(model, tokenizer, [(forget_rows, -1.0)], recipe, **kwargs)


def gradient_difference(model: torch.nn.Module, tokenizer: Any, forget_rows: Sequence[dict[str, str]],
                        retain_rows: Sequence[dict[str, str]], recipe: LoraRecipe = UNLEARN_RECIPE,
                        **kwargs: Any) -> TrainResult:
    """GD baseline (TOFU Sec. 4): ascent on a forget batch plus descent on a retain batch each step."""
    return train_lora(model, tokenizer, [(forget_rows, -1.0), (retain_rows, 1.0)], recipe, **kwargs)


def save_adapter(peft_model: Any, folder: Path, *, base_model: str, half: bool = True) -> None:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` (no model card) to ``folder``.

    ``half`` stores the LoRA matrices in float16 (half the size in git; they are cast back to the
    model's dtype on load, a relative change of about 1e-3 in each weight)."""
    from safetensors.torch import load_file, save_file

    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base_model
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)
    if half:
        path = folder / "adapter_model.safetensors"
        tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path), metadata={"format": "pt"})


def load_adapter(model: torch.nn.Module, folder: Path, *, merge: bool = True) -> Any:
    """``model`` with the adapter in ``folder``; merged into plain weights by default (eval mode,
    no grad), which is what GUARD-IT's hooks and the baselines expect."""
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(folder))
    out = wrapped.merge_and_unload() if merge else wrapped
    out.eval()
    out.requires_grad_(False)
    return out


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """sha256 of the rows as JSONL (one ``json.dumps(row, ensure_ascii=False)`` per line, in order)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return digest.hexdigest()


def merged_target(cache_dir: Path, adapter: Path | None = None, *, name: str = "tofu-target-merged") -> Path:
    """The TOFU target (the embedded model with the target adapter merged) as a plain HF model dir in
    ``cache_dir``, written once and reused: a folder ``guardit serve`` and ``load_model`` read like any
    other model. ``adapter`` defaults to the checkout's ``artifacts/tofu-lora/target``."""
    import shutil

    from evals.data import default_adapters
    from steering.loading import EMBEDDED_MODEL, load_model

    out = Path(cache_dir) / name
    if (out / "config.json").is_file():
        return out
    if adapter is None:
        root = default_adapters()
        adapter = root / "target" if root is not None else None
    if adapter is None or not (adapter / "adapter_model.safetensors").is_file():
        from steering.errors import ConfigError

        raise ConfigError(f"expected the TOFU target adapter under {adapter or 'artifacts/tofu-lora/target'}; "
                          "run scripts/finetune_tofu.py", field="adapters")
    loaded = load_model(EMBEDDED_MODEL, cache_dir=Path(cache_dir), device="cpu", dtype=torch.float32)
    model = load_adapter(loaded.model, adapter, merge=True)
    # Written under a temporary name and renamed: a reader never sees half a model.
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(tmp))
    tmp.rename(out)
    return out
