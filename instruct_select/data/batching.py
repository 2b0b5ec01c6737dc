"""Batches for training and for forward passes: token-budget packing, example-count steps, padding.

Two ways to cut a pass over the data, both deterministic given the ids, seed and epoch and
independent of the input order (ids are sorted before anything random happens):

- ``token_budget_batches``: length-packed batches, each holding at most ``token_budget`` padded
  tokens (batch size x longest example) and ``max_batch_size`` examples. Without a seed (forward
  passes: features, losses, embeddings) the whole set is sorted by length, which pads least. With
  a seed (training) every epoch draws a fresh permutation, cuts it into windows of about
  ``WINDOW_BATCHES`` batches' worth of examples, and packs each window by length class (lengths
  within ``LENGTH_CLASS_RATIO`` of each other count as equal, in random order): a batch still
  holds similar lengths, but which examples share it changes every epoch. The batch order is
  shuffled too.
- ``example_steps``: the papers' batching. Every epoch a seeded permutation of all examples is
  cut into optimizer steps of ``batch_size`` examples (the last may be smaller); the training loop
  splits each step into micro-batches with ``token_budget_batches`` and accumulates gradients, so
  the micro-batches change memory and speed but not the update.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .chat import IGNORE_INDEX, TokenizedExample

# A window of 16 batches keeps the padding close to a global sort's (each batch spans 1/16 of the
# window's length range) while the examples that can meet in a batch are a fresh random 1/k of
# the data every epoch.
WINDOW_BATCHES = 16
# Lengths within 10% of each other are interchangeable when packing: at most ~10% more padding
# than an exact sort, and the examples of one length no longer land in the same batch every epoch
# (the only source of change when the data fit in one window).
LENGTH_CLASS_RATIO = 1.1


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
    """Indices into ``items`` grouped into batches under the token budget.

    Without ``seed``: sorted by (length, id), fixed. With ``seed``: the epoch's own windows, length
    classes and batch order (module docstring); every index appears exactly once either way.
    """
    if seed is None:
        order = sorted(range(len(items)), key=lambda i: (len(items[i]), items[i].id))
        return _pack(items, order, token_budget, max_batch_size)
    rng = random.Random(f"{seed}:{epoch}")
    order = _permutation(items, rng)
    position = {index: p for p, index in enumerate(order)}
    batches: list[list[int]] = []
    for window in _windows(items, order, WINDOW_BATCHES * token_budget, WINDOW_BATCHES * max_batch_size):
        # Within a length class the permutation decides the order, so class members mix anew each epoch.
        window.sort(key=lambda i: (_length_class(len(items[i])), position[i]))
        batches.extend(_pack(items, window, token_budget, max_batch_size))
    rng.shuffle(batches)
    return batches


def example_steps(items: list[TokenizedExample], batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Indices into ``items`` cut into optimizer steps of ``batch_size`` examples, freshly permuted per epoch."""
    order = _permutation(items, random.Random(f"{seed}:{epoch}"))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def _permutation(items: list[TokenizedExample], rng: random.Random) -> list[int]:
    # Sorting by id first makes the permutation independent of the input order.
    order = sorted(range(len(items)), key=lambda i: items[i].id)
    rng.shuffle(order)
    return order


def _windows(items, order: list[int], max_tokens: int, max_count: int) -> list[list[int]]:
    """Consecutive runs of ``order`` holding about ``max_tokens`` tokens or ``max_count`` examples."""
    windows: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        current.append(index)
        tokens += len(items[index])
        if tokens >= max_tokens or len(current) >= max_count:
            windows.append(current)
            current, tokens = [], 0
    if current:
        windows.append(current)
    return windows


def _length_class(length: int) -> int:
    return int(math.log(max(length, 1)) / math.log(LENGTH_CLASS_RATIO))


def _pack(items, order: list[int], token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Greedy packing of ``order`` as given: close a batch before it would pass either limit."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        n = len(items[index])
        # A batch's cost is its size times its longest example (everything pads to that).
        if current and ((len(current) + 1) * max(longest, n) > token_budget or len(current) >= max_batch_size):
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, n)
    if current:
        batches.append(current)
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
