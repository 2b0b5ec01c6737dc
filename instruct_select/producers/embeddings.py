"""Learning percentage's clustering embeddings of every pool example: by default the selection
model's mean-pooled final hidden states (ours); with ``learning_percentage.embedding_model``, a local
sentence encoder's mean-pooled states (the reference clusters all-MiniLM-L6-v2 embeddings)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import Artifact, fingerprint_model
from ..config import RunConfig
from ..context import RunContext
from ..data.batching import Batching
from ..data.example import Example
from ..layout import RunLayout
from .loss_trajectories import pass_batching, selection_model


def produce(ctx: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    from ..features.embeddings import Embeddings, embeddings_stage

    if ctx.is_shard_job or ctx.stop_after:
        return None
    lp = config.learning_percentage
    out_dir = layout.selection_model(lp.label).embeddings
    if lp.embedding_model:
        encoder_embeddings_stage(ctx, lp.embedding_model, out_dir, pass_batching(config))
        embeddings = Embeddings.load(out_dir)
    else:
        embeddings = embeddings_stage(ctx, selection_model(config), out_dir, pass_batching(config))
    return Artifact(embeddings, embeddings.fingerprint())


def encoder_embeddings_stage(ctx: RunContext, folder: str, out_dir: Path, batching: Batching) -> None:
    """Every pool example embedded by the local encoder ``folder``: the mean of its last hidden states
    over the example's "role: content" text, cut at ``batching.max_length`` or the encoder's own limit
    (the pass of ``producers.encoder_embeddings``, as the embed representation runs it)."""
    from ..features.embeddings import check_embedding_model
    from ..features.sharded import sharded_store_stage
    from ..features.store import FeatureStore
    from .encoder_embeddings import fill_encoder_embeddings, load_encoder

    encoder = check_embedding_model(folder)
    pool = ctx.require_pool()
    settings = {"encoder": "local encoder, mean-pooled", "text": "role: content lines",
                "max_length": batching.max_length}
    inputs = {"model": fingerprint_model(encoder), "data": pool.fingerprint}

    def fill(out: Path, mine: list[Example], meta: dict) -> dict:
        model, tokenizer = load_encoder(encoder, ctx.device)
        store = FeatureStore.open_or_create(out, [e.id for e in mine], int(model.config.hidden_size), "float32", meta)
        return fill_encoder_embeddings(model, tokenizer, mine, store, batching.max_length, batching.max_batch_size,
                                       progress=ctx.progress)

    sharded_store_stage(ctx, out_dir, "embeddings", settings, inputs, pool.examples, {**settings, **inputs}, fill)
