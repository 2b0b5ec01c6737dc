"""Training batches: each epoch regroups the examples (both modes), budgets hold, input order is irrelevant."""
from __future__ import annotations

import math
import random

import pytest

from instruct_select.config import TrainSettings
from instruct_select.data.batching import example_steps, token_budget_batches
from instruct_select.data.chat import TokenizedExample
from instruct_select.train.loop import epoch_steps
from instruct_select.train.schedule import lr_at


def _items(n: int, seed: int = 0, low: int = 8, high: int = 64) -> list[TokenizedExample]:
    rng = random.Random(seed)
    return [TokenizedExample(f"ex{i:04d}", [1] * rng.randint(low, high), [-100] * 1) for i in range(n)]


def _groups(items, batches) -> set[frozenset[str]]:
    return {frozenset(items[i].id for i in b) for b in batches}


@pytest.mark.parametrize("n", [30, 400])  # one window (regrouped by length classes only) and many windows
def test_token_budget_batches_cover_once_within_budget_whatever_the_input_order(n):
    items = _items(n)
    budget, most = 256, 8
    for epoch in range(3):
        batches = token_budget_batches(items, budget, most, seed=5, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(n))
        for b in batches:
            assert len(b) <= most and len(b) * max(len(items[i]) for i in b) <= budget
        permuted = items[:]
        random.Random(epoch).shuffle(permuted)
        again = token_budget_batches(permuted, budget, most, seed=5, epoch=epoch)
        assert [[items[i].id for i in b] for b in batches] == [[permuted[i].id for i in b] for b in again]


@pytest.mark.parametrize("n, low, high, budget, most, share", [
    (30, 8, 64, 256, 8, 0.0),       # one window, few equal lengths: only length-class neighbours swap
    (400, 8, 64, 256, 8, 0.5),      # many windows
    (600, 30, 128, 2048, 32, 0.5),  # a lab selection (15%) at the lab's settings: one or two windows
])
def test_token_budget_batches_regroup_examples_every_epoch(n, low, high, budget, most, share):
    items = _items(n, low=low, high=high)
    first, second = (_groups(items, token_budget_batches(items, budget, most, seed=5, epoch=e)) for e in (0, 1))
    # Not just a new batch order: batches hold combinations of examples the other epoch lacks
    # (with many examples per length class or many windows, most of them).
    assert first != second and len(first - second) > share * len(first)
    # The same seed and epoch give the same batches; another seed gives others.
    assert first == _groups(items, token_budget_batches(items, budget, most, seed=5, epoch=0))
    assert first != _groups(items, token_budget_batches(items, budget, most, seed=6, epoch=0))


def test_seeded_packing_pads_little_more_than_a_global_sort():
    items = _items(2000, low=30, high=128)

    def padded(batches):
        return sum(len(b) * max(len(items[i]) for i in b) for b in batches)

    real = sum(len(item) for item in items)
    sorted_waste = padded(token_budget_batches(items, 2048, 32)) / real - 1
    seeded_waste = padded(token_budget_batches(items, 2048, 32, seed=0, epoch=0)) / real - 1
    # Measured: ~1% padding for a global sort, ~7% for windows of 16 batches with 10% length classes.
    assert sorted_waste < 0.02 and seeded_waste < 0.12


def test_unseeded_batches_are_the_sorted_packing():
    items = _items(50)
    batches = token_budget_batches(items, 128, 4)
    flat = [i for b in batches for i in b]
    assert flat == sorted(range(50), key=lambda i: (len(items[i]), items[i].id))
    # Greedy: a batch closes only when the next example would break a limit.
    for b, nxt in zip(batches, batches[1:]):
        assert len(b) == 4 or (len(b) + 1) * len(items[nxt[0]]) > 128


def test_example_steps_permute_all_examples_every_epoch():
    items = _items(300)
    steps = [example_steps(items, 128, seed=2, epoch=e) for e in range(2)]
    for epoch_steps_ in steps:
        assert [len(s) for s in epoch_steps_] == [128, 128, 44]  # ceil(300 / 128) steps, the last one smaller
        assert sorted(i for s in epoch_steps_ for i in s) == list(range(300))
    assert _groups(items, steps[0]).isdisjoint(_groups(items, steps[1]))
    permuted = list(reversed(items))
    again = example_steps(permuted, 128, seed=2, epoch=0)
    assert [[items[i].id for i in s] for s in steps[0]] == [[permuted[i].id for i in s] for s in again]


@pytest.mark.parametrize("n, batch_size", [(300, 128), (256, 128), (5, 128), (7, 1)])
def test_examples_mode_has_ceil_n_over_batch_size_steps_per_epoch(n, batch_size):
    items = _items(n)
    settings = TrainSettings(batching="examples", batch_size=batch_size, token_budget=64, max_batch_size=4,
                             max_length=64, seed=1)
    for epoch in range(3):
        assert len(epoch_steps(items, settings, epoch)) == math.ceil(n / batch_size)


def test_cosine_schedule_matches_the_closed_form():
    peak, total, ratio = 2e-5, 200, 0.02
    warmup = math.ceil(ratio * total)  # 4 warmup steps, 196 decay steps
    for step in range(total):
        if step < warmup:
            want = peak * (step + 1) / warmup
        else:
            want = peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert lr_at(step, total, peak, "cosine", ratio) == pytest.approx(want, rel=1e-12)
    assert lr_at(warmup - 1, total, peak, "cosine", ratio) == pytest.approx(peak)
    assert lr_at(warmup, total, peak, "cosine", ratio) == pytest.approx(peak)  # the decay starts at the peak
    assert lr_at(warmup + (total - warmup) // 2, total, peak, "cosine", ratio) == pytest.approx(peak / 2)
    assert lr_at(total - 1, total, peak, "cosine", ratio) < peak * 1e-3
    # Linear for comparison: halfway down at the same point, and the two differ in between.
    assert lr_at(warmup + (total - warmup) // 2, total, peak, "linear", ratio) == pytest.approx(peak / 2)
    quarter = warmup + (total - warmup) // 4
    assert lr_at(quarter, total, peak, "cosine", ratio) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(quarter, total, peak, "linear", ratio) == pytest.approx(peak * 0.75)


def test_batching_settings_are_checked():
    from instruct_select.errors import ConfigError

    with pytest.raises(ConfigError, match="batching"):
        TrainSettings(batching="tokens")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainSettings(batching="examples", batch_size=0)
