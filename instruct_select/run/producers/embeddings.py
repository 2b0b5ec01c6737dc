"""Learning percentage's clustering embeddings of every pool example: by default the selection
model's mean-pooled final hidden states (ours); with ``learning_percentage.embedding_model``, a local
sentence encoder's mean-pooled states (the reference clusters all-MiniLM-L6-v2 embeddings)."""
from __future__ import annotations

from pathlib import Path

from ...artifacts import Artifact, fingerprint_model
from ...config import RunConfig
from ..context import RunContext
from ...data.batching import Batching
from ...data.example import Example
from ...features.embeddings import Embeddings, fill_mean_hidden_states
from ...features.store import FeatureStore
from ...layout import RunLayout
from ...models.loading import load_base_model, load_tokenizer
from .encoder_embeddings import check_encoder, encoder_stage
from .loss_trajectories import pass_batching, selection_model
from .sharded import StoreStage, sharded_store_stage

EMBEDDING_MODEL = "learning_percentage.embedding_model"


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """Learning percentage's clustering embeddings of the context's pool (``config``: the selection
    model or ``learning_percentage.embedding_model``; ``layout``: the run's folders). Returns the
    embeddings (one vector per pool id) and their fingerprint, or None in a shard job or with
    ``stop_after``."""
    if context.is_shard_job or context.stop_after:
        return None
    lp = config.learning_percentage
    out_dir = layout.selection_model(lp.label).embeddings
    if lp.embedding_model:
        encoder_embeddings_stage(context, lp.embedding_model, out_dir, pass_batching(config))
        embeddings = Embeddings.load(out_dir)
    else:
        embeddings = embeddings_stage(context, selection_model(config), out_dir, pass_batching(config))
    return Artifact(embeddings, embeddings.fingerprint())


def embeddings_stage(context: RunContext, model_path: str | Path, out_dir: str | Path, batching: Batching) -> Embeddings | None:
    """Embed every pool example with ``model_path``'s mean final hidden states (the default encoder)
    into ``out_dir``, in batches of ``batching`` (``max_length`` tokens per example). Returns the
    embeddings.

    Split across torch.distributed ranks like every per-example pass (``sharded``); an
    independent shard job embeds its share and returns None.
    """
    pool = context.require_pool()
    settings = {"encoder": "hidden", "max_length": batching.max_length, "chat_template": context.chat_template,
                "dtype": context.dtype}
    inputs = {"model": fingerprint_model(model_path), "data": pool.fingerprint}

    def fill(folder: Path, mine: list[Example], meta: dict) -> dict:
        model = load_base_model(model_path, context.dtype, context.device)
        store = FeatureStore.open_or_create(folder, [e.id for e in mine], int(model.config.hidden_size), "float32", meta)
        return fill_mean_hidden_states(model, load_tokenizer(model_path, context.chat_template), mine, store,
                                       batching)

    sharded_store_stage(context, out_dir, StoreStage("embeddings", settings, inputs), pool.examples, fill)
    return None if context.is_shard_job else Embeddings.load(out_dir)


def encoder_embeddings_stage(context: RunContext, folder: str, out_dir: Path, batching: Batching) -> None:
    """Every pool example embedded by the local encoder ``folder``: the mean of its last hidden states
    over the example's "role: content" text, cut at ``batching.max_length`` or the encoder's own limit
    (the embed representation's stage, ``producers.encoder_embeddings.encoder_stage``), into
    ``out_dir``, ``batching.max_batch_size`` examples a batch. Returns nothing: read the store with
    ``Embeddings.load(out_dir)``."""
    encoder = check_encoder(folder, EMBEDDING_MODEL)
    encoder_stage(context, encoder, context.require_pool(), out_dir, max_length=batching.max_length,
                  batch_size=batching.max_batch_size)
