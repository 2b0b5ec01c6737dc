"""Last-token final hidden states (the representation RDS compares), batched forward passes only."""
from __future__ import annotations

import torch

from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import tokenize_examples
from ..data.example import Example
from ..logs import progress_bar
from ..loss import backbone_and_head
from .store import FeatureStore


@torch.inference_mode()
def fill_last_token_states(model, tokenizer, examples: list[Example], store: FeatureStore,
                           batching: Batching) -> dict:
    """Write each pending example's final-layer state at its last real token into ``store``."""
    model.eval()
    pending = set(store.pending_ids())
    items, _ = tokenize_examples(tokenizer, [e for e in examples if e.id in pending], batching.max_length)
    device = next(model.parameters()).device
    for indices in progress_bar(token_budget_batches(items, batching.token_budget, batching.max_batch_size),
                                desc="hidden states"):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        final = _final_states(model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: the last real position
        states = final[torch.arange(len(indices)), last.to(device)].float().cpu().numpy()
        store.write([items[i].id for i in indices], states)
    return {"computed": len(items)}


def _final_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last layer's (normed) states, (B, T, H): from the model's body alone when the loss knows
    it (``loss.backbone_and_head``), so no logits are computed (B × T × vocabulary; 6 GiB in float32
    for 16 × 2,048 tokens of a 49K vocabulary); else from the whole model's hidden states."""
    parts = backbone_and_head(model)
    if parts is not None:
        return parts[0](input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                 use_cache=False).hidden_states[-1]
