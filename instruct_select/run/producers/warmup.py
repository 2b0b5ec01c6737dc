"""The LoRA warmup that gradient features and hidden states are taken from (not a need of its own)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ...artifacts import finished_manifest, require_finished
from ...config import LoraSettings, RunConfig, from_dict
from ...data.chat import tokenize_example
from ...data.loading import LoadedData, load_examples
from ...errors import ArtifactMismatchError, ConfigError, InputError
from ...layout import RunLayout, TrainFolders
from ...models.loading import add_lora, load_base_model, load_tokenizer
from ...train.checkpoint import Checkpoint, load_weights_into
from ..context import RunContext
from ..stages import select_stage, train_stage


def warmup(context: RunContext, config: RunConfig, layout: RunLayout) -> Path:
    """Train LoRA on the context's pool (or a random ``config.influence.warmup_fraction`` of it),
    one checkpoint per epoch, into ``layout.warmup``; returns that folder."""
    settings = config.influence
    selection_dir = None
    if settings.warmup_fraction < 1:
        selection_dir = select_stage(context, "random", str(settings.warmup_fraction), layout.warmup_data,
                                     seed=settings.warmup.seed).path
    if context.is_shard_job and finished_manifest(layout.warmup) is None:
        raise ConfigError(f"shard jobs need a finished warmup in {layout.warmup}: run the same command once with "
                          "--stop-after warmup (no --shard) first")
    train_stage(context, config.model, layout.warmup, settings.warmup, selection_dir=selection_dir)
    return layout.warmup


def validation_data(config: RunConfig) -> LoadedData:
    """The validation set influence-based methods score against (one file per target task), checked
    before any compute: every target task keeps at least one response token after truncation."""
    if not str(config.validation):
        raise ConfigError("influence-based methods (less, bids, rds, ...) need validation data: set validation "
                          "to a folder with one file per target task")
    validation = load_examples(config.validation)
    tokenizer = load_tokenizer(config.model, config.chat_template or None)
    length = config.influence.features.max_length
    kept = Counter(e.task for e in validation.examples if tokenize_example(tokenizer, e, length).n_response_tokens)
    for task, total in sorted(Counter(e.task for e in validation.examples).items()):
        if not kept[task]:
            raise InputError(f"{config.validation}: none of the {total} validation examples of task {task!r} keeps "
                             f"a response token after truncation to {length} tokens; raise "
                             "influence.features.max_length or shorten their prompts")
    return validation


def warmup_model(warmup_dir: Path, checkpoint: Checkpoint, device: str | None = None):
    """The base model of the finished warmup in ``warmup_dir`` with its LoRA layers holding
    ``checkpoint``'s weights (on ``device``), and the warmup's tokenizer."""
    manifest = require_finished(warmup_dir, "warmup")
    train = manifest["settings"]["train"]
    if train.get("full_finetune"):
        raise ArtifactMismatchError(f"{warmup_dir} was a full fine-tune; gradient features need a LoRA warmup")
    base = manifest["outputs"]["base_model"]
    model = add_lora(load_base_model(base, manifest["settings"].get("dtype", "float32"), device),
                     from_dict(LoraSettings, train["lora"]))
    load_weights_into(model, checkpoint)
    model.eval()
    return model, load_tokenizer(TrainFolders(warmup_dir).model)
