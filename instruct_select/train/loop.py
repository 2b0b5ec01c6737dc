"""The one fine-tuning loop, used for LESS/BIDS warmup and for training on a selection.

Seeded and deterministic: LoRA initialisation, dropout and batch order all come from
``settings.seed``. Batches are length-sorted under a token budget; the learning rate follows a
warmup-then-decay schedule computed per step; the loss is ``per_example_loss`` averaged over the
batch. After each epoch a checkpoint keeps the trainable weights, AdamW's moments keyed by
parameter name, and the epoch's mean learning rate (what LESS's checkpoint weighting needs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import TrainSettings
from ..data.batching import collate, token_budget_batches
from ..data.chat import RenderReport, tokenize_examples
from ..data.example import Example
from ..features.loss import model_per_example_loss
from ..models.loading import add_lora, trainable_named_parameters
from .checkpoint import Checkpoint, save_checkpoint
from .schedule import lr_at


@dataclass
class TrainResult:
    model: torch.nn.Module
    checkpoints: list[Checkpoint]
    render_report: RenderReport
    steps: int
    examples: int
    tokens: int
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)


def prepare_model(base_model, settings: TrainSettings):
    """LoRA-wrapped (or fully trainable) model; seeded so adapter initialisation is reproducible."""
    torch.manual_seed(settings.seed)
    if settings.full_finetune:
        for p in base_model.parameters():
            p.requires_grad_(True)
        return base_model
    return add_lora(base_model, settings.lora)


def train_model(
    base_model,
    tokenizer,
    examples: list[Example],
    settings: TrainSettings,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    log=print,
) -> TrainResult:
    """Fine-tune ``base_model`` on ``examples``; checkpoints go to ``out_dir/checkpoints/epoch-E``."""
    start = time.time()
    items, report = tokenize_examples(tokenizer, examples, settings.max_length)
    if report.truncated or report.no_response:
        log(f"[train] {report.summary()}")
    model = prepare_model(base_model, settings)
    model.train()
    named = trainable_named_parameters(model)
    optimizer = torch.optim.AdamW(
        [p for _, p in named],
        lr=settings.learning_rate,
        betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_epsilon,
        weight_decay=settings.weight_decay,
    )
    # Batch order needs the seed only; computing every epoch's batches up front gives the step count.
    epochs = [
        token_budget_batches(items, settings.token_budget, settings.max_batch_size,
                             seed=settings.seed, epoch=e)
        for e in range(settings.epochs)
    ]
    total_steps = sum(len(b) for b in epochs)
    pad_id = tokenizer.pad_token_id
    checkpoints: list[Checkpoint] = []
    epoch_losses: list[float] = []
    step = 0
    tokens = 0
    bar = tqdm(total=total_steps, desc="train", disable=not progress, leave=False)
    for epoch, batches in enumerate(epochs, start=1):
        lrs, losses = [], []
        for batch_indices in batches:
            lr = lr_at(step, total_steps, settings.learning_rate, settings.schedule, settings.warmup_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = collate([items[i] for i in batch_indices], pad_id)
            loss = model_per_example_loss(model, batch).mean()
            loss.backward()
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            lrs.append(lr)
            losses.append(loss.item())
            tokens += int(batch["attention_mask"].sum())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        epoch_losses.append(sum(losses) / len(losses))
        log(f"[train] epoch {epoch}/{settings.epochs}: mean loss {epoch_losses[-1]:.4f}, "
            f"mean lr {sum(lrs) / len(lrs):.2e}, {len(batches)} steps")
        if out_dir is not None and settings.save_checkpoints:
            checkpoints.append(
                save_checkpoint(Path(out_dir) / "checkpoints" / f"epoch-{epoch}", model, optimizer,
                                epoch=epoch, mean_lr=sum(lrs) / len(lrs), step=step)
            )
    bar.close()
    model.eval()
    return TrainResult(model, checkpoints, report, step, len(items), tokens,
                       time.time() - start, epoch_losses)


def save_trained(model, tokenizer, model_dir: str | Path) -> None:
    """Write the adapter (or the full model) and the tokenizer, so the folder loads on its own."""
    from ..artifacts import atomic_path

    with atomic_path(model_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
