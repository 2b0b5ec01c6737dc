"""Length-sorted token-budget batching and padding.

Examples are sorted by length so that a batch holds similar lengths (little padding), packed
until ``batch size x longest example`` would pass the token budget, and the batch order is
shuffled per epoch from the seed. The same ids, seed and epoch give the same batches whatever
the input order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .chat import IGNORE_INDEX, TokenizedExample


@dataclass(frozen=True)
class Batching:
    """How a forward pass over examples batches them: truncation length and padded-token budget."""

    max_length: int
    token_budget: int
    max_batch_size: int


def token_budget_batches(
    items: list[TokenizedExample],
    token_budget: int,
    max_batch_size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
) -> list[list[int]]:
    """Indices into ``items`` grouped into batches; shuffled batch order when ``seed`` is given."""
    # Sorting by (length, id) makes the batches independent of the input order.
    order = sorted(range(len(items)), key=lambda i: (len(items[i]), items[i].id))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = len(items[index])  # sorted ascending: the newest item is the longest
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    if seed is not None:
        random.Random(f"{seed}:{epoch}").shuffle(batches)
    return batches


def collate(items: list[TokenizedExample], pad_token_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch (to ``pad_to`` when given): input_ids, attention_mask, labels (-100 on padding)."""
    width = max([len(item) for item in items] + [pad_to or 0])
    input_ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item)
        input_ids[row, :n] = torch.frombuffer(item.input_ids, dtype=torch.int32)  # array("i"): no copy
        labels[row, :n] = torch.frombuffer(item.labels, dtype=torch.int32)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
