"""The one fine-tuning loop, used for LESS/BIDS warmup and for training on a selection.

Seeded and deterministic: LoRA initialisation, dropout and which examples share a step all come
from ``settings.seed``, regrouped every epoch. An optimizer step is one length-packed batch under
the token budget (``batching=token_budget``, fast) or ``batch_size`` examples whose gradients
accumulate over micro-batches (``batching=examples``, as the papers train); either way its loss is
the mean of ``per_example_loss`` over the step's examples. The learning rate follows a
warmup-then-decay schedule computed per optimizer step. After each epoch a checkpoint keeps the
trainable weights, AdamW's moments keyed by parameter name, and the epoch's mean learning rate
(what LESS's checkpoint weighting needs).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..artifacts import atomic_path
from ..config import TrainSettings
from ..data.batching import collate, example_steps, token_budget_batches
from ..data.chat import RenderReport, tokenize_examples
from ..data.example import Example
from ..loss import model_per_example_loss
from ..models.loading import add_lora, trainable_named_parameters
from ..distributed import all_reduce_sum_, barrier, is_main, process_shard
from ..errors import ArtifactMismatchError, TrainingDivergedError
from ..layout import TrainFolders
from ..logs import progress_bar
from .checkpoint import (
    Checkpoint, list_checkpoints, load_checkpoint, load_weights_into, restore_optimizer, save_checkpoint,
)
from .schedule import lr_at

logger = logging.getLogger(__name__)


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
) -> TrainResult:
    """Fine-tune ``base_model`` (LoRA-wrapped unless ``settings.full_finetune``) on ``examples``,
    rendered with ``tokenizer``'s chat template, as ``settings`` says; each epoch's checkpoint goes
    to ``out_dir/checkpoints/epoch-E`` (none without ``out_dir``), and an interrupted run in
    ``out_dir`` resumes after its last finished epoch. Returns the trained model, its checkpoints,
    the rendering report, the optimizer steps, examples, tokens, seconds and each epoch's mean loss."""
    start = time.time()
    items, report = tokenize_examples(tokenizer, examples, settings.max_length)
    if report.truncated or report.no_response:
        logger.info("[train] %s", report.summary())
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
    # Steps need the seed only; computing every epoch's steps up front gives the schedule's length.
    epochs = [epoch_steps(items, settings, e) for e in range(settings.epochs)]
    total_steps = sum(len(b) for b in epochs)
    pad_id = tokenizer.pad_token_id
    checkpoints = _resume(model, optimizer, named, out_dir, settings) if out_dir is not None else []
    epoch_losses: list[float] = [c.extra.get("mean_loss", float("nan")) for c in checkpoints]
    step = checkpoints[-1].step if checkpoints else 0
    tokens = 0
    bar = progress_bar(total=total_steps, desc="train")
    bar.update(step)
    shard = process_shard()
    for epoch, plan in enumerate(epochs, start=1):
        if epoch <= len(checkpoints):
            continue  # finished before an interruption; its state was restored above
        lrs, losses = [], []
        for step_indices in plan:
            lr = lr_at(step, total_steps, settings.learning_rate, settings.schedule, settings.warmup_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, batch_tokens = _accumulate_gradients(model, named, [items[i] for i in step_indices],
                                                           pad_id, shard, settings)
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _check_finite(loss_sum / len(step_indices), step + 1, epoch, settings)
            lrs.append(lr)
            losses.append(loss_sum / len(step_indices))
            tokens += batch_tokens
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        _check_finite_weights(named, step, epoch, settings)
        epoch_losses.append(sum(losses) / len(losses))
        logger.info("[train] epoch %d/%d: mean loss %.4f, mean lr %.2e, %d steps", epoch, settings.epochs,
                    epoch_losses[-1], sum(lrs) / len(lrs), len(plan))
        if out_dir is not None and settings.save_checkpoints:
            path = TrainFolders(out_dir).checkpoint(epoch)
            if is_main():
                save_checkpoint(path, model, optimizer, {"epoch": epoch, "mean_lr": sum(lrs) / len(lrs), "step": step,
                                                         "mean_loss": epoch_losses[-1]})
            barrier()
            checkpoints.append(load_checkpoint(path))
    bar.close()
    model.eval()
    return TrainResult(model, checkpoints, report, step, len(items), tokens,
                       time.time() - start, epoch_losses)


def _check_finite(loss: float, step: int, epoch: int, settings: TrainSettings) -> None:
    """Stop at the first step whose loss is NaN or infinite: nothing after it can be a model. A weight
    that turns non-finite makes the next step's loss so; ``_check_finite_weights`` covers an epoch's last step."""
    if not math.isfinite(loss):
        raise _diverged(f"the loss is {loss}", step, epoch, settings)


def _check_finite_weights(named, step: int, epoch: int, settings: TrainSettings) -> None:
    """Before an epoch's checkpoint: every trainable weight finite (one pass over them an epoch, not a step)."""
    if not torch.stack([p.detach().isfinite().all() for _, p in named]).all():
        raise _diverged("a weight became NaN or infinite", step, epoch, settings)


def _diverged(what: str, step: int, epoch: int, settings: TrainSettings) -> TrainingDivergedError:
    return TrainingDivergedError(f"training diverged at step {step} (epoch {epoch}): {what}; no model was written. "
                                 f"Lower learning_rate (now {settings.learning_rate:g}; LESS, BIDS: 2e-5) or check "
                                 "the data and the dtype, then rerun")


def _resume(model, optimizer, named, out_dir, settings: TrainSettings) -> list[Checkpoint]:
    """Restore the last finished epoch of an interrupted run in ``out_dir`` (weights, moments, RNG).

    Epochs are the unit of resumption: an epoch cut short is redone from its start, which gives
    the same result because batch order and dropout come from the seed and the saved RNG state.
    """
    if not settings.save_checkpoints:
        return []
    done = list_checkpoints(out_dir)
    if not done:
        return []
    if [c.epoch for c in done] != list(range(1, len(done) + 1)) or len(done) > settings.epochs:
        raise ArtifactMismatchError(f"{out_dir} holds checkpoints {[c.epoch for c in done]} that do not fit "
                                    f"a {settings.epochs}-epoch run; delete the folder to start again")
    last = done[-1]
    load_weights_into(model, last)
    restore_optimizer(optimizer, named, last)
    state = last.rng_state()
    if state is not None:
        torch.set_rng_state(state)
    logger.info("[train] resuming %s after epoch %d", out_dir, last.epoch)
    return done


def epoch_steps(items, settings: TrainSettings, epoch: int) -> list[list[int]]:
    """The optimizer steps of epoch ``epoch`` (0-based): indices into ``items``, one list per step."""
    if settings.batching == "examples":
        return example_steps(items, settings.batch_size, seed=settings.seed, epoch=epoch)
    return token_budget_batches(items, settings.token_budget, settings.max_batch_size,
                                seed=settings.seed, epoch=epoch)


def _micro_batches(step_items, shard, settings: TrainSettings) -> list[tuple[list, int | None]]:
    """This process's share of a step as (micro-batch, padded width) pairs."""
    mine = shard.take(step_items)
    if not mine:
        return []
    if settings.batching == "examples":
        # Each process packs its own share, so a micro-batch is as large as the budget allows on
        # every process however many there are; right padding leaves the real tokens' losses alone.
        packed = token_budget_batches(mine, settings.token_budget, settings.max_batch_size)
        return [([mine[i] for i in b], None) for b in packed]
    # One batch: every process pads its share to the global batch's width, the shapes one process has.
    return [(mine, max(len(item) for item in step_items))]


def _accumulate_gradients(model, named, step_items, pad_id: int, shard, settings: TrainSettings) -> tuple[float, int]:
    """Gradients of the step's mean per-example loss, left in ``.grad``; (loss sum, tokens).

    Every micro-batch contributes the sum of its examples' losses divided by the step's example
    count, so each example weighs 1/N of the step whatever its length or micro-batch: the update
    equals one batch of all N examples up to floating-point summation order. Under torch.distributed
    each process takes every count-th example of the same step and the gradient sums are
    all-reduced once per step, which gives the same update again.
    """
    loss_sum = torch.zeros((), dtype=torch.float64)
    tokens = torch.zeros((), dtype=torch.float64)
    for micro, width in _micro_batches(step_items, shard, settings):
        batch = collate(micro, pad_id, pad_to=width)
        losses = model_per_example_loss(model, batch)
        (losses.sum() / len(step_items)).backward()
        loss_sum += losses.detach().double().sum().cpu()
        tokens += float(batch["attention_mask"].sum())
    if shard.count > 1:
        for _, p in named:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            all_reduce_sum_(p.grad)
        totals = torch.stack([loss_sum, tokens]).to(named[0][1].device)
        all_reduce_sum_(totals)
        loss_sum, tokens = totals[0].cpu(), totals[1].cpu()
    return float(loss_sum), int(tokens)


def save_trained(model, tokenizer, model_dir: str | Path) -> None:
    """Write the adapter (or the full model) and the tokenizer, so the folder loads on its own.

    Under torch.distributed only the main process writes; the others wait until it is there.
    """
    if is_main():
        with atomic_path(model_dir) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
    barrier()
