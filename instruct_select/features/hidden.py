"""Last-token final hidden states (the representation RDS compares), batched forward passes only."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.batching import collate, token_budget_batches
from ..data.chat import tokenize_examples
from ..data.example import Example


@torch.inference_mode()
def last_token_states(model, tokenizer, examples: list[Example], *, max_length: int = 256,
                      token_budget: int = 8192, max_batch_size: int = 64, progress: bool = True) -> tuple[list[str], np.ndarray]:
    """(ids, array (N, hidden)) with each example's final-layer state at its last real token."""
    model.eval()
    items, _ = tokenize_examples(tokenizer, examples, max_length)
    device = next(model.parameters()).device
    rows: dict[str, np.ndarray] = {}
    for indices in tqdm(token_budget_batches(items, token_budget, max_batch_size), desc="hidden states",
                        disable=not progress, leave=False):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    output_hidden_states=True)
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the last real position
        states = out.hidden_states[-1][torch.arange(len(indices)), last.to(device)].float().cpu().numpy()
        for i, state in zip(indices, states):
            rows[items[i].id] = state
    ids = [e.id for e in examples if e.id in rows]
    return ids, np.stack([rows[i] for i in ids])
