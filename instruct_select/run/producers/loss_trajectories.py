"""Learning percentage's loss trajectories: the selection model trained on the whole pool for n
epochs (one checkpoint each), then every example's loss before training and after each epoch."""
from __future__ import annotations

import logging
from pathlib import Path

from ...artifacts import Artifact, fingerprint_model, fingerprint_path, require_finished
from ...config import RunConfig
from ...data.batching import Batching
from ...data.chat import tokenize_examples
from ...data.example import Example
from ...errors import ArtifactMismatchError
from ...features.store import FeatureStore
from ...features.trajectories import LossTrajectories, ModelAtEpoch, fill_loss_store
from ...layout import RunLayout, TrainFolders
from ...models.loading import load_tokenizer
from ...train.checkpoint import Checkpoint, list_checkpoints
from ..context import RunContext
from ..stages import train_stage
from .sharded import StoreStage, sharded_store_stage

logger = logging.getLogger(__name__)


def selection_model(config: RunConfig) -> str:
    """The model whose learning percentage selects: the configured one, else the run's own."""
    return config.learning_percentage.selection_model or config.model


def pass_batching(config: RunConfig) -> Batching:
    """Batches of the loss and embedding passes: the selection training's length, a larger budget if asked."""
    lp = config.learning_percentage
    train = lp.selection_train_settings(config.train)
    return Batching(train.max_length, lp.pass_token_budget(train), lp.max_batch_size)


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """Learning percentage's loss trajectories: the selection model (``selection_model(config)``)
    trained on the context's pool, then every example's loss (nats) before training and after each
    epoch, in ``layout``'s folders. Returns the trajectories and their fingerprint, or None in a
    shard job or with ``stop_after``."""
    if context.is_shard_job or context.stop_after:
        logger.info("[learning percentage] shard jobs and --stop-after compute gradient features only; "
                    "run without them for the loss trajectories")
        return None
    lp = config.learning_percentage
    folders = layout.selection_model(lp.label)
    model = selection_model(config)
    train_stage(context, model, folders.train, lp.selection_train_settings(config.train))
    trajectories = loss_trajectories_stage(context, model, folders.train, folders.losses, pass_batching(config))
    return Artifact(trajectories, trajectories.fingerprint())


def check_train_run(model_path: str | Path, train_dir: Path) -> tuple[dict, list[Checkpoint]]:
    """The finished training run in ``train_dir``, trained from ``model_path``: its manifest and its
    per-epoch checkpoints; refused by name when it was trained from another model or kept none."""
    manifest = require_finished(train_dir, "training run")
    if manifest["inputs"].get("model") != fingerprint_model(model_path):
        raise ArtifactMismatchError(
            f"{train_dir} was trained from another model than {model_path} "
            f"(it names {manifest['outputs'].get('base_model')!r}); pass the model it was trained from"
        )
    checkpoints = list_checkpoints(train_dir)
    if not checkpoints:
        raise ArtifactMismatchError(f"{train_dir} has no per-epoch checkpoints; train with save_checkpoints=true")
    return manifest, checkpoints


def loss_trajectories_stage(context: RunContext, model_path: str | Path, train_dir: str | Path, out_dir: str | Path,
                            batching: Batching) -> "LossTrajectories | None":
    """Loss of every pool example at epoch 0 (base model) and at each checkpoint of ``train_dir``.

    ``context``: the pool and device; ``model_path``: the base model ``train_dir`` was trained
    from; ``out_dir``: one store per epoch (``epoch-E``); ``batching``: ``max_length`` tokens per
    example, ``token_budget`` padded tokens per batch. Losses are token-mean cross-entropy in nats.
    Returns the trajectories (examples × epochs 0..n). Under torch.distributed each rank computes every N-th example and the main process merges
    (``sharded``); an independent shard job computes its share and returns None.
    """
    pool = context.require_pool()
    max_length = batching.max_length
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    manifest, checkpoints = check_train_run(model_path, train_dir)
    shared = {"model": fingerprint_model(model_path), "train_run": fingerprint_path(train_dir),
              "data": pool.fingerprint}
    models = ModelAtEpoch(model_path, manifest, context.device)
    # Loaded and tokenised once, on the first epoch that needs them: every epoch hands this process
    # the same examples (all of them, or its rank's share).
    tokenizer, tokenized = None, None
    for checkpoint in [None, *checkpoints]:
        epoch = 0 if checkpoint is None else checkpoint.epoch

        def fill(folder: Path, mine: list[Example], meta: dict, checkpoint=checkpoint, epoch=epoch) -> dict:
            nonlocal tokenizer, tokenized
            if tokenized is None:
                tokenizer = load_tokenizer(TrainFolders(train_dir).model)
                tokenized = tokenize_examples(tokenizer, mine, max_length)
                if tokenized[1].no_response or tokenized[1].truncated:
                    logger.info("[losses] %s", tokenized[1].summary())
            store = FeatureStore.open_or_create(folder, [e.id for e in mine], 1, "float32", meta)
            return fill_loss_store(models.get(checkpoint), tokenizer, mine, store, batching, tokenized=tokenized)

        meta = {**shared, "checkpoint": f"epoch-{epoch}", "max_length": max_length}
        spec = StoreStage("loss-trajectory", {"max_length": max_length, "checkpoint": meta["checkpoint"]}, shared, meta)
        sharded_store_stage(context, out_dir / f"epoch-{epoch}", spec, pool.examples, fill)
    return None if context.is_shard_job else LossTrajectories.load(out_dir)
