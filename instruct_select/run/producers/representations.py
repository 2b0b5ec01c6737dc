"""RDS+'s representations: the base model's position-weighted mean final hidden states of the pool
and of the validation set, one cached feature store per split (``features.representations``).

No warmup: RDS+ embeds with the base model itself (``config.model``). Batches follow the gradient
features' settings (``influence.features``: max_length, token_budget, max_batch_size).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...artifacts import Artifact, fingerprint_json, fingerprint_model, fingerprint_path
from ...config import RunConfig
from ...data.batching import Batching
from ...data.example import Example
from ...data.loading import LoadedData
from ...features.representations import Representations, fill_weighted_mean_states
from ...features.store import FeatureStore
from ...layout import RunLayout
from ...models.loading import load_base_model, load_tokenizer
from ..context import RunContext
from .sharded import StoreStage, sharded_store_stage
from .warmup import validation_data


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """RDS+'s representations: ``config.model``'s position-weighted mean final hidden states of the
    context's pool and of ``config.validation``, into ``layout``'s folders. Returns them as one
    ``Representations`` artifact, or None in a shard job or with ``stop_after``."""
    if context.is_shard_job:  # shard jobs split the gradient features only; this forward pass runs unsplit later
        return None
    if context.stop_after == "warmup":  # a scheduler's warmup-only run: this pass is not part of it
        return None
    validation = validation_data(config)
    folders = {split: _split_stage(context, config, data, layout.representations(split))
               for split, data in (("pool", context.require_pool()), ("validation", validation))}
    if context.is_shard_job or context.stop_after == "features":
        return None
    return vectors_artifact(folders, validation)


def vectors_artifact(folders: dict[str, Path], validation: LoadedData) -> Artifact:
    """The pool and validation stores in ``folders`` as one ``Representations`` artifact, each
    validation vector tagged with its target task (RDS+'s, and the embed representation's)."""
    pool_ids, pool = _read(folders["pool"])
    val_ids, val = _read(folders["validation"])
    task_of = {e.id: str(e.task) for e in validation.examples}
    value = Representations(pool_ids, pool, val_ids, val, [task_of[i] for i in val_ids])
    return Artifact(value, fingerprint_json({s: fingerprint_path(f) for s, f in folders.items()}))


def _split_stage(context: RunContext, config: RunConfig, data: LoadedData, folder: Path) -> Path:
    features = config.influence.features
    batching = Batching(features.max_length, features.token_budget, features.max_batch_size)
    settings = {"pooling": "position-weighted mean", "max_length": batching.max_length,
                "chat_template": context.chat_template, "dtype": context.dtype}
    inputs = {"model": fingerprint_model(config.model), "data": data.fingerprint}

    def fill(out: Path, examples: list[Example], meta: dict) -> dict:
        model = load_base_model(config.model, context.dtype, context.device)
        store = FeatureStore.open_or_create(out, [e.id for e in examples], int(model.config.hidden_size),
                                            "float32", meta)
        return fill_weighted_mean_states(model, load_tokenizer(config.model, context.chat_template), examples, store,
                                         batching)

    sharded_store_stage(context, folder, StoreStage("representations", settings, inputs), data.examples, fill)
    return folder


def _read(folder: Path):
    store = FeatureStore.open(folder)
    return store.ids, np.asarray(store.features, dtype=np.float32)
