"""Learning percentage's clustering embeddings: the selection model's mean-pooled final hidden
states of every pool example (or a sentence-transformers encoder's)."""
from __future__ import annotations

from ..artifacts import Artifact
from ..config import RunConfig
from ..context import RunContext
from ..layout import RunLayout
from .loss_trajectories import pass_batching, selection_model


def produce(ctx: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    from ..features.embeddings import embeddings_stage

    if ctx.is_shard_job or ctx.stop_after:
        return None
    lp = config.learning_percentage
    embeddings = embeddings_stage(ctx, selection_model(config), layout.selection_model(lp.label).embeddings,
                                  pass_batching(config), encoder=lp.encoder)
    return Artifact(embeddings, embeddings.fingerprint())
