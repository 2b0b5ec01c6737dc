"""The LoRA warmup that gradient features and hidden states are taken from (not a need of its own)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import finished_manifest, require_finished
from ..config import LoraSettings, RunConfig, from_dict
from ..context import RunContext
from ..data.loading import LoadedData, load_examples
from ..errors import ArtifactMismatchError, ConfigError
from ..layout import RunLayout
from ..stages import select_stage, train_stage
from ..train.checkpoint import Checkpoint, load_weights_into


def warmup(ctx: RunContext, config: RunConfig, layout: RunLayout) -> Path:
    """Train LoRA on the pool (or a random ``warmup_fraction`` of it), one checkpoint per epoch."""
    settings = config.influence
    selection_dir = None
    if settings.warmup_fraction < 1:
        selection_dir = select_stage(ctx, "random", str(settings.warmup_fraction), layout.warmup_data,
                                     seed=settings.warmup.seed).path
    if ctx.is_shard_job and finished_manifest(layout.warmup) is None:
        raise ConfigError(f"shard jobs need a finished warmup in {layout.warmup}: run the same command once with "
                          "--stop-after warmup (no --shard) first")
    train_stage(ctx, config.model, layout.warmup, settings.warmup, selection_dir=selection_dir)
    return layout.warmup


def validation_data(config: RunConfig) -> LoadedData:
    """The validation set influence-based methods score against (one file per target task)."""
    if not str(config.validation):
        raise ConfigError("influence-based methods (less, bids, rds, ...) need validation data: set validation "
                          "to a folder with one file per target task")
    return load_examples(config.validation)


def warmup_model(warmup_dir: Path, checkpoint: Checkpoint, device: str | None = None):
    """The base model with the warmup's LoRA layers holding ``checkpoint``'s weights."""
    from ..models.loading import add_lora, load_base_model, load_tokenizer

    manifest = require_finished(warmup_dir, "warmup")
    train = manifest["settings"]["train"]
    if train.get("full_finetune"):
        raise ArtifactMismatchError(f"{warmup_dir} was a full fine-tune; gradient features need a LoRA warmup")
    base = manifest["outputs"]["base_model"]
    model = add_lora(load_base_model(base, manifest["settings"].get("dtype", "float32"), device),
                     from_dict(LoraSettings, train["lora"]))
    load_weights_into(model, checkpoint)
    model.eval()
    return model, load_tokenizer(Path(warmup_dir) / "model")
