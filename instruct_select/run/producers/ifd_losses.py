"""IFD's losses: every pool example's response loss given its prompt and alone, one cached
feature store (``features.ifd``).

The scoring model is ``config.ifd_model`` when set (Superfiltering: a small model scores for a large
one), else the run's own model, as it is before any training (Cherry_LLM scores with a briefly
pre-trained model; here the base model stands in, so the method needs no training of its own).
Its chat template is the run's ``chat_template`` setting, else its tokenizer's own, else (another
model that has none, like GPT-2) the plain one.
Batches follow the gradient features' settings (``influence.features``: max_length, token_budget,
max_batch_size). Both losses are forward passes only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from ...artifacts import Artifact, fingerprint_model, fingerprint_path
from ...config import RunConfig
from ...data.batching import Batching
from ...data.example import Example
from ...features.ifd import IfdLosses, fill_ifd_losses
from ...features.store import FeatureStore
from ...layout import RunLayout
from ...models.loading import load_base_model, load_tokenizer
from ..context import RunContext
from .sharded import StoreStage, sharded_store_stage


def ifd_model(config: RunConfig) -> str:
    """The model that scores IFD: ``config.ifd_model``, else the run's own."""
    return config.ifd_model or config.model


def ifd_template(context: RunContext, config: RunConfig) -> str | None:
    """The run's chat template setting; for another IFD model with no template of its own (GPT-2)
    and none set, the plain one (Superfiltering prompts GPT-2 with plain text)."""
    if context.chat_template or not config.ifd_model:
        return context.chat_template
    try:
        own = getattr(AutoTokenizer.from_pretrained(config.ifd_model), "chat_template", None)
    except OSError:
        return None  # the pass's load_tokenizer says what is wrong
    return None if own else "plain"


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """IFD's losses of the context's pool: each example's response loss (nats) given its prompt and
    alone, scored by ``ifd_model(config)`` into ``layout.ifd_losses``. Returns them as ``IfdLosses``
    and their fingerprint, or None in a shard job or with ``stop_after``."""
    if context.is_shard_job:  # shard jobs split the gradient features only; this forward pass runs unsplit later
        return None
    if context.stop_after == "warmup":  # a scheduler's warmup-only run: this pass is not part of it
        return None
    pool, model_path, folder = context.require_pool(), ifd_model(config), layout.ifd_losses
    features = config.influence.features
    batching = Batching(features.max_length, features.token_budget, features.max_batch_size)
    template = ifd_template(context, config)
    settings = {"max_length": batching.max_length, "chat_template": template, "dtype": context.dtype}
    inputs = {"model": fingerprint_model(model_path), "data": pool.fingerprint}

    def fill(out: Path, examples: list[Example], meta: dict) -> dict:
        model = load_base_model(model_path, context.dtype, context.device)
        store = FeatureStore.open_or_create(out, [e.id for e in examples], 2, "float32", meta)
        return fill_ifd_losses(model, load_tokenizer(model_path, template), examples, store, batching)

    sharded_store_stage(context, folder, StoreStage("ifd-losses", settings, inputs), pool.examples, fill)
    if context.is_shard_job or context.stop_after == "features":
        return None
    store = FeatureStore.open(folder)
    losses = np.asarray(store.features, dtype=np.float64)
    return Artifact(IfdLosses(store.ids, losses[:, 0], losses[:, 1]), fingerprint_path(folder))
