"""RDS+'s representations: position-weighted mean pooling of the base model's final hidden states.

Ivison et al. 2025 ("Large-Scale Data Selection for Instruction Tuning"; hamishivi/automated-
instruction-selection, ``minimal_multitask/compute_influence_cosinesim.py --pooling weighted_mean``,
run there with ``--batch_size 1``) embed each example, prompt and response, as

    e = sum_t w_t h_t,   w_t = t / (1 + 2 + ... + L),   t = 1..L

over its L tokens: h_t is the final layer's hidden state at position t (the SGPT weighting: later
tokens, which have read more of the example, weigh more). With batch size 1 there is no padding,
so here the weights run over each example's real tokens only and batches give the same vectors.
The model is the *base* model, not a warmed one: the pass needs no training.

    out_dir/   a FeatureStore (dim = hidden size, float32) per split with a manifest; resumable, and
               split across processes or shard jobs (``run.producers.sharded``)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import tokenize_example
from ..data.example import Example
from ..logs import progress_bar
from .store import FeatureStore


@dataclass
class Representations:
    """RDS+'s artifact: pooled vectors of the pool and of the validation set, and each validation
    example's target task (RDS+ aggregates over a task's examples, then round-robin over tasks)."""

    pool_ids: list[str]
    pool: np.ndarray  # (N, d) float32
    validation_ids: list[str]
    validation: np.ndarray  # (V, d) float32
    validation_tasks: list[str]


def position_weights(mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) weights t / sum(1..L) on each row's real tokens (right padding), 0 on padding."""
    positions = torch.cumsum(mask, dim=1) * mask
    return positions / positions.sum(dim=1, keepdim=True).clamp(min=1)


@torch.inference_mode()
def fill_weighted_mean_states(model, tokenizer, examples: list[Example], store: FeatureStore,
                              batching: Batching) -> dict:
    """Write the position-weighted mean final hidden state of every pending example into ``store``.

    Every example is embedded, with or without a response token left after truncation: the
    representation covers the whole rendered example.
    """
    model.eval()
    pending = set(store.pending_ids())
    items = [tokenize_example(tokenizer, e, batching.max_length) for e in examples if e.id in pending]
    # The backbone alone: its last_hidden_state is the final layer after the final norm (the
    # reference's hidden_states[-1]), without the vocabulary projection.
    backbone = getattr(model, "base_model", model)
    device = next(model.parameters()).device
    for indices in progress_bar(token_budget_batches(items, batching.token_budget, batching.max_batch_size),
                                desc="representations"):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        mask = batch["attention_mask"].to(device)
        states = backbone(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                          use_cache=False).last_hidden_state.float()  # no key/value cache: one pass
        pooled = (states * position_weights(mask.float())[..., None]).sum(dim=1)
        store.write([items[i].id for i in indices], pooled.cpu().numpy())
    return {"computed": len(items), "truncated": sum(it.truncated for it in items)}
