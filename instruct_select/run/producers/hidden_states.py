"""RDS's representations: last-token final hidden states of the pool and the validation set under
the last warmup checkpoint, one cached feature store per split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...artifacts import Artifact, fingerprint_json, fingerprint_path
from ...config import RunConfig
from ...data.batching import Batching
from ...data.example import Example
from ...data.loading import LoadedData
from ...features.hidden import fill_last_token_states
from ...features.store import FeatureStore
from ...layout import RunLayout
from ...train.checkpoint import list_checkpoints
from ..context import RunContext
from .sharded import StoreStage, sharded_store_stage
from .warmup import validation_data, warmup, warmup_model


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """RDS's representations: the last warmup checkpoint's last-token final hidden states of the
    context's pool and of ``config.validation``, into ``layout``'s folders. Returns {split: (ids,
    float32 matrix)} and its fingerprint, or None in a shard job or with ``stop_after``."""
    if context.is_shard_job:  # shard jobs split the gradient features only; this forward pass runs unsplit later
        return None
    validation = validation_data(config)
    warmup_dir = warmup(context, config, layout)
    if context.stop_after == "warmup":
        return None
    folders = {split: _states_stage(context, warmup_dir, data, layout.hidden_states(split), config)
               for split, data in (("pool", context.require_pool()), ("validation", validation))}
    if context.is_shard_job or context.stop_after == "features":
        return None
    value = {split: _read(folder) for split, folder in folders.items()}
    return Artifact(value, fingerprint_json({s: fingerprint_path(f) for s, f in folders.items()}))


def _states_stage(context: RunContext, warmup_dir: Path, data: LoadedData, folder: Path, config: RunConfig) -> Path:
    features = config.influence.features
    batching = Batching(features.max_length, features.token_budget, features.max_batch_size)
    checkpoint = list_checkpoints(warmup_dir)[-1]
    inputs = {"model": fingerprint_path(warmup_dir), "checkpoint": f"epoch-{checkpoint.epoch}",
              "data": data.fingerprint}
    settings = {"max_length": batching.max_length}

    def fill(out: Path, examples: list[Example], meta: dict) -> dict:
        model, tokenizer = warmup_model(warmup_dir, checkpoint, context.device)
        store = FeatureStore.open_or_create(out, [e.id for e in examples], int(model.config.hidden_size),
                                            "float32", meta)
        return fill_last_token_states(model, tokenizer, examples, store, batching)

    sharded_store_stage(context, folder, StoreStage("hidden-states", settings, inputs), data.examples, fill)
    return folder


def _read(folder: Path):
    store = FeatureStore.open(folder)
    return store.ids, np.asarray(store.features, dtype=np.float32)
