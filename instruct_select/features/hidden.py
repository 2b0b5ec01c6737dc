"""Last-token final hidden states (the representation RDS compares), batched forward passes only."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import tokenize_examples
from ..data.example import Example
from .store import FeatureStore


@torch.inference_mode()
def fill_last_token_states(model, tokenizer, examples: list[Example], store: FeatureStore, batching: Batching, *,
                           progress: bool = True) -> dict:
    """Write each pending example's final-layer state at its last real token into ``store``."""
    model.eval()
    pending = set(store.pending_ids())
    items, _ = tokenize_examples(tokenizer, [e for e in examples if e.id in pending], batching.max_length)
    device = next(model.parameters()).device
    for indices in tqdm(token_budget_batches(items, batching.token_budget, batching.max_batch_size),
                        desc="hidden states", disable=not progress, leave=False):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    output_hidden_states=True)
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the last real position
        states = out.hidden_states[-1][torch.arange(len(indices)), last.to(device)].float().cpu().numpy()
        store.write([items[i].id for i in indices], states)
    return {"computed": len(items)}
