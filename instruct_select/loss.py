"""The one loss: token-mean cross-entropy over response tokens, per example.

Warmup, final training, gradient features and loss trajectories all call ``per_example_loss``, so
masking and length normalisation cannot drift between stages. A batch's training loss is the mean
of its examples' losses, so every example weighs the same whatever its length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.chat import IGNORE_INDEX


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over each row's labelled tokens: shape (batch,).

    ``logits`` (batch, time, vocab) predict the token after each position; ``labels`` (batch,
    time) hold -100 on prompt and padding tokens. Computed in float32 whatever the model dtype.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    token_loss = F.cross_entropy(
        shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    mask = (shift_labels != IGNORE_INDEX).to(token_loss.dtype)
    return (token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def model_per_example_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward a collated batch through ``model`` and return each example's loss."""
    device = next(model.parameters()).device
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return per_example_loss(logits, batch["labels"].to(device))
