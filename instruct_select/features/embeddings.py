"""Example embeddings for clustering the pool (learning-percentage selection, METHODS §3).

Default (ours): the mean of the selection model's final hidden states over all of an example's
rendered tokens (prompt and response), from the *base* model, so the clusters describe the pool,
not what one training run made of it. The reference (dheeraj7596/Small2Large) clusters
all-MiniLM-L6-v2 sentence embeddings instead: ``learning_percentage.embedding_model`` names a local
sentence-encoder folder for that (embedded by the ``producers.embeddings`` producer with the
local-encoder stage of ``producers.encoder_embeddings``: ``from_pretrained`` with no network,
mean-pooled over the "role: content" lines of ``conversation_text``). Selection L2-normalises the rows before k-means either way, as the
encoder's own Normalize layer would.

    out_dir/   a FeatureStore (dim = embedding size, float32) with a manifest; resumable, and
               split across torch.distributed ranks (``run.producers.sharded``)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..artifacts import fingerprint_json, require_finished
from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import tokenize_example
from ..data.example import Example
from ..errors import ArtifactMismatchError
from ..logs import progress_bar
from .store import FeatureStore


@dataclass
class Embeddings:
    """``vectors[i]`` embeds example ``ids[i]``."""

    ids: list[str]
    vectors: np.ndarray  # (N, d) float32
    meta: dict

    def fingerprint(self) -> str:
        return fingerprint_json({"ids": self.ids, "meta": self.meta})

    @classmethod
    def load(cls, folder: str | Path) -> "Embeddings":
        require_finished(folder, "embeddings")
        store = FeatureStore.open(folder)
        if not store.complete():
            raise ArtifactMismatchError(f"{folder} holds unfinished embeddings; rerun the embeddings stage")
        return cls(store.ids, np.asarray(store.features, dtype=np.float32), store.meta)


@torch.inference_mode()
def fill_mean_hidden_states(model, tokenizer, examples: list[Example], store: FeatureStore,
                            batching: Batching) -> dict:
    """Mean-pooled final hidden states of every pending example (every example has tokens)."""
    model.eval()
    pending = set(store.pending_ids())
    items = [tokenize_example(tokenizer, e, batching.max_length) for e in examples if e.id in pending]
    # The backbone alone: its last_hidden_state is the normed final layer, without the vocab projection.
    backbone = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    for indices in progress_bar(token_budget_batches(items, batching.token_budget, batching.max_batch_size),
                                desc="embeddings"):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        mask = batch["attention_mask"].to(device)
        states = backbone(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                          use_cache=False).last_hidden_state.float()  # no key/value cache: one pass
        pooled = (states * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        store.write([items[i].id for i in indices], pooled.cpu().numpy())
    return {"computed": len(items)}


def conversation_text(example: Example) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in example.messages)
