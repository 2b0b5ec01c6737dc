"""The one loss: token-mean cross-entropy over response tokens, per example.

Warmup, final training, gradient features and loss trajectories all call ``per_example_loss``, so
masking and length normalisation cannot drift between stages. An optimizer step's training loss is
the mean of its examples' losses, so every example weighs the same whatever its length; with
gradient accumulation each micro-batch adds the sum of its examples' losses divided by the step's
example count (``train.loop``), not its own mean.

Memory: the model's own forward would compute logits for every position and the whole vocabulary
(B × T × V; 16 GiB in float32 for a Llama-3-8B batch of 16 × 2048 tokens) before the loss masks
most of them out. ``model_per_example_loss`` instead takes the final hidden states, keeps the
labelled positions, applies the output head there only, a chunk of positions at a time (``chunk_positions``), and
computes the cross-entropy in float32 chunk by chunk; under autograd each chunk's logits are
recomputed in the backward pass (activation checkpointing), so at most one chunk of logits is held.
Supported: models whose logits are ``get_output_embeddings()(backbone(...).last_hidden_state)``
with no logit scaling or soft-capping (Llama, Mistral, Qwen2/3, SmolLM, Phi-3, GPT-2, OPT, ...),
LoRA-wrapped or not, tied embeddings or not. Others take the full-logits path (``per_example_loss``)
with a one-line warning.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

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


# Labelled positions per output-head chunk: at most CHUNK_TOKENS, and no more than CHUNK_LOGITS_BYTES
# of float32 logits (a chunk's logits, their log-softmax and their two gradients live at once in
# the backward pass: 4 × 64 MiB; 341 positions for a 49K vocabulary, 130 for Llama-3's 128K).
CHUNK_TOKENS = 1024
CHUNK_LOGITS_BYTES = 64 * 2**20
# Config fields that change logits after the head: such models take the full-logits path.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale", "logits_scaling")
_WARNED: set[str] = set()


def model_per_example_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward a collated batch through ``model`` and return each example's loss (shape (batch,))."""
    device = next(model.parameters()).device
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    parts = backbone_and_head(model)
    if parts is None:  # any module returning .logits (wrappers need not know use_cache)
        return per_example_loss(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
    backbone, head = parts
    # use_cache=False: a key/value cache would keep every layer's keys and values of the batch
    # (128 KiB a token for Llama-3-8B in bfloat16), which one pass never reads.
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return labelled_positions_loss(hidden, labels, head)


def backbone_and_head(model):
    """(the model body returning ``last_hidden_state``, the output head), or None when the logits
    are not simply the head applied to the body's output (then: a one-line warning, once)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # through PEFT
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    config = getattr(base, "config", None)
    transformed = any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS)
    if isinstance(head, torch.nn.Linear) and isinstance(backbone, torch.nn.Module) and not transformed:
        return backbone, head
    kind = type(base).__name__
    if kind not in _WARNED:
        _WARNED.add(kind)
        warnings.warn(f"{kind}: the loss computes full-vocabulary logits at every position (its logits are "
                      "not the output head applied to the last hidden state); memory grows with B × T × V")
    return None


def chunk_positions(vocab: int) -> int:
    """Labelled positions per head chunk for a ``vocab``-sized output (read at call time: tests set them)."""
    return max(1, min(CHUNK_TOKENS, CHUNK_LOGITS_BYTES // (4 * vocab)))


def labelled_positions_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module,
                            chunk: int | None = None) -> torch.Tensor:
    """``per_example_loss`` from the final hidden states (B, T, H): the head is applied only at the
    positions that predict a label, ``chunk`` positions at a time (default ``chunk_positions``), the
    cross-entropy in float32."""
    chunk = chunk or chunk_positions(head.out_features)
    shift_labels = labels[:, 1:]
    rows, cols = (shift_labels != IGNORE_INDEX).nonzero(as_tuple=True)
    states = hidden[:, :-1][rows, cols]
    targets = shift_labels[rows, cols]
    pieces = []
    for start in range(0, targets.numel(), chunk):
        part = (states[start:start + chunk], targets[start:start + chunk])
        if torch.is_grad_enabled() and states.requires_grad:
            pieces.append(checkpoint(_head_cross_entropy, head, *part, use_reentrant=False))
        else:
            pieces.append(_head_cross_entropy(head, *part))
    totals = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device)
    if pieces:
        totals = totals.index_add(0, rows, torch.cat(pieces))
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1).clamp(min=1).to(torch.float32)
    return totals / counts


def _head_cross_entropy(head: torch.nn.Module, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(states).float(), targets, reduction="none")
