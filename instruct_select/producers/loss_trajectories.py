"""Learning percentage's loss trajectories: the selection model trained on the whole pool for n
epochs (one checkpoint each), then every example's loss before training and after each epoch."""
from __future__ import annotations

from ..artifacts import Artifact
from ..config import RunConfig
from ..context import RunContext
from ..data.batching import Batching
from ..layout import RunLayout
from ..stages import train_stage


def selection_model(config: RunConfig) -> str:
    """The model whose learning percentage selects: the configured one, else the run's own."""
    return config.learning_percentage.selection_model or config.model


def pass_batching(config: RunConfig) -> Batching:
    """Batches of the loss and embedding passes: the selection training's length, a larger budget if asked."""
    lp = config.learning_percentage
    train = lp.selection_train_settings(config.train)
    return Batching(train.max_length, lp.pass_token_budget(train), lp.max_batch_size)


def produce(ctx: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    from ..features.trajectories import loss_trajectories_stage

    if ctx.is_shard_job or ctx.stop_after:
        ctx.log("[learning percentage] shard jobs and --stop-after compute gradient features only; "
                "run without them for the loss trajectories")
        return None
    lp = config.learning_percentage
    folders = layout.selection_model(lp.label)
    model = selection_model(config)
    train_stage(ctx, model, folders.train, lp.selection_train_settings(config.train))
    trajectories = loss_trajectories_stage(ctx, model, folders.train, folders.losses, pass_batching(config))
    return Artifact(trajectories, trajectories.fingerprint())
