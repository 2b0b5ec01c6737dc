"""EMBED's representation: the mean-pooled final hidden states of a local encoder folder
(``embed_encoder``: any model ``AutoModel.from_pretrained`` loads, e.g. a sentence encoder saved
with ``save_pretrained``) for the pool and the validation set, one cached feature store per split.

Each example is embedded as its conversation's "role: content" lines (the text learning
percentage's sentence encoders read, ``features.embeddings.conversation_text``), truncated to the
smaller of ``influence.features.max_length`` and the encoder's own limit; the vector is the mean of
the last hidden states over its real tokens. Selectors compare the vectors by cosine
(``select/representations.py``). Nothing is downloaded: a missing or non-model folder is refused.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from ...artifacts import Artifact, fingerprint_model
from ...config import RunConfig
from ...data.example import Example
from ...data.loading import LoadedData
from ...errors import ConfigError
from ...features.embeddings import conversation_text
from ...features.store import FeatureStore
from ...layout import RunLayout
from ...logs import progress_bar
from ...models.loading import check_tokenizer_path
from ..context import RunContext
from .representations import vectors_artifact
from .sharded import StoreStage, sharded_store_stage
from .warmup import validation_data


def check_encoder(folder: str, setting: str = "embed_encoder") -> Path:
    """The encoder folder, refused unless it is a local folder holding a model and its tokenizer
    (``setting`` names where it was given)."""
    if not folder:
        raise ConfigError(f"the embed representation needs an encoder: set {setting} to a local encoder folder "
                          "(config.json, weights and tokenizer, as save_pretrained writes them); none is given, and "
                          "none is substituted")
    path = Path(folder).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"{setting} {folder} is not a local model folder (no config.json there); name a folder "
                          "that save_pretrained wrote (nothing is downloaded)")
    check_tokenizer_path(path, setting)
    return path


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """The embed representation: the local encoder ``config.embed_encoder``'s mean states of the
    context's pool and of ``config.validation``, into ``layout``'s folders. Returns both as one
    ``Representations`` artifact, or None in a shard job or with ``stop_after``."""
    encoder = check_encoder(config.embed_encoder)
    if context.is_shard_job or context.stop_after == "warmup":  # like RDS+'s pass: one unsplit forward pass, later
        return None
    validation = validation_data(config)
    folders = {split: _split_stage(context, config, encoder, data, layout.encoder_embeddings(split))
               for split, data in (("pool", context.require_pool()), ("validation", validation))}
    if context.stop_after == "features":
        return None
    return vectors_artifact(folders, validation)


def _split_stage(context: RunContext, config: RunConfig, encoder: Path, data: LoadedData, folder: Path) -> Path:
    features = config.influence.features
    return encoder_stage(context, encoder, data, folder, max_length=features.max_length,
                         batch_size=features.max_batch_size)


def encoder_stage(context: RunContext, encoder: str | Path, data: LoadedData, folder: str | Path, *,
                  max_length: int, batch_size: int) -> Path:
    """``data``'s examples embedded by the local ``encoder`` into the feature store ``folder``: a
    cached, resumable stage, split across processes like every per-example pass. ``max_length``:
    tokens per example (the encoder's own limit if lower); ``batch_size``: examples per batch.
    Returns ``folder``."""
    settings = {"pooling": "mean", "text": "role: content lines", "max_length": max_length, "batch_size": batch_size}
    inputs = {"model": fingerprint_model(encoder), "data": data.fingerprint}

    def fill(out: Path, examples: list[Example], meta: dict) -> dict:
        model, tokenizer = load_encoder(encoder, context.device)
        store = FeatureStore.open_or_create(out, [e.id for e in examples], int(model.config.hidden_size),
                                            "float32", meta)
        return fill_encoder_embeddings(model, tokenizer, examples, store, max_length, batch_size)

    sharded_store_stage(context, folder, StoreStage("encoder-embeddings", settings, inputs), data.examples, fill)
    return Path(folder)


def load_encoder(folder: str | Path, device=None):
    """The encoder and its tokenizer (right padding, a pad token) from a local folder, in float32,
    on ``device`` (default the CPU)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load an encoder from {folder}: {str(err).splitlines()[0]}") from None
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device or "cpu").eval(), tokenizer


def fill_encoder_embeddings(model, tokenizer, examples: list[Example], store, max_length: int,
                            batch_size: int) -> dict:
    """Write ``model``'s (an encoder's) mean last hidden state over the real tokens of every pending
    example, tokenised by ``tokenizer``, into ``store``; returns the count computed. ``max_length``: tokens per example (the tokenizer's own limit if
    lower); ``batch_size``: examples per batch."""
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    pending = set(store.pending_ids())
    todo = sorted((e for e in examples if e.id in pending), key=lambda e: len(conversation_text(e)))  # like lengths batch together
    device = next(model.parameters()).device
    # An encoder-decoder folder (T5) embeds with its encoder alone.
    encoder = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model
    with torch.inference_mode():
        for start in progress_bar(range(0, len(todo), batch_size), desc="embed"):
            chunk = todo[start:start + batch_size]
            batch = tokenizer([conversation_text(e) for e in chunk], padding=True, truncation=True,
                              max_length=limit, return_tensors="pt").to(device)
            states = encoder(**batch).last_hidden_state.float()
            mask = batch["attention_mask"][..., None].float()
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            store.write([e.id for e in chunk], pooled.cpu().numpy())
    return {"computed": len(todo)}
