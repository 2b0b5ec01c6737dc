"""RDS+: the pooling against one example at a time with the reference's weights, the per-task max
cosine and the round-robin over tasks on hand-made cases, and the selector on both."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from instruct_select.data.example import Example
from instruct_select.features.representations import Representations, fill_weighted_mean_states
from instruct_select.select.rds_plus import round_robin, task_max_cosine
from instruct_select.select.base import SelectionContext
from instruct_select.select.selection import run_selector


def _example(i: int, user: str, answer: str) -> Example:
    return Example(f"e{i}", "t", [{"role": "user", "content": user}, {"role": "assistant", "content": answer}])


def test_pooling_matches_the_reference_one_example_at_a_time(tiny_model_dir, tmp_path):
    from instruct_select.data.batching import Batching, token_budget_batches
    from instruct_select.data.chat import tokenize_example
    from instruct_select.features.store import FeatureStore
    from instruct_select.models.loading import load_base_model, load_tokenizer

    model, tokenizer = load_base_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    examples = [_example(0, "What is 2 + 3?", "5"), _example(1, "hello", "world, how are you today? I am fine"),
                _example(2, "Name the capital of Velkar.", "It is Orrin."), _example(3, "hi", "x" * 40)]
    batching = Batching(max_length=48, token_budget=4096, max_batch_size=64)  # e3 is cut to 48 tokens
    items = [tokenize_example(tokenizer, e, batching.max_length) for e in examples]
    assert len(token_budget_batches(items, batching.token_budget, batching.max_batch_size)) == 1
    assert len({len(it) for it in items}) == len(items)  # one padded batch of four lengths
    store = FeatureStore.open_or_create(tmp_path / "s", [e.id for e in examples], 32, "float32", {})
    fill_weighted_mean_states(model, tokenizer, examples, store, batching)
    for item in items:
        # The reference (compute_influence_cosinesim.py, --pooling weighted_mean, batch size 1):
        # weights arange(L) + 1, normalised to sum 1, over the last element of hidden_states.
        ids = torch.tensor([list(item.input_ids)])
        with torch.no_grad():
            states = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        weights = torch.arange(states.shape[0]).unsqueeze(0) + 1
        weights = weights / weights.sum(dim=1, keepdim=True)
        expected = torch.sum(states * weights[0].unsqueeze(-1), dim=0).numpy()
        np.testing.assert_allclose(store.features[store.row_of[item.id]], expected, rtol=1e-4, atol=1e-5)
        # and it is not the plain mean
        assert not np.allclose(expected, states.mean(dim=0).numpy(), atol=1e-4)


def test_task_max_cosine_by_hand():
    pool = np.array([[2, 0], [0, 1], [1, 1]], np.float32)
    validation = np.array([[1, 0], [0, 3], [1, 1]], np.float32)
    scores, tasks = task_max_cosine(pool, validation, ["b_task", "a_task", "a_task"])
    assert tasks == ["a_task", "b_task"]  # sorted names
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(scores, [[r, 1], [1, 0], [1, r]], atol=1e-6)


def test_round_robin_loses_the_turn_on_an_example_already_taken():
    #                  a    b
    scores = np.array([[.9, .95],   # p0: first for both tasks
                       [.8, .1],    # p1
                       [.1, .85],   # p2: b's second
                       [.5, .6],    # p3
                       [.2, .2]])   # p4
    # a takes p0; b's turn pops p0 again and adds nothing (as the reference's dict does); a takes
    # p1; b takes p2; a takes p3; b pops p3 again; a takes p4.
    picks, by = round_robin(scores, 5)
    assert picks == [0, 1, 2, 3, 4] and by == [0, 0, 1, 0, 0]
    assert round_robin(scores, 3)[0] == [0, 1, 2]  # a prefix: the ranking does not depend on the budget
    # Neither the global top-k of the max (p0, p2, p1) nor a round-robin that skips taken examples
    # (a p0, b p2, a p1) gives this.
    assert round_robin(scores, 2)[0] == [0, 1]


def test_rds_plus_selector_by_hand():
    pool = [_example(i, "q", "a") for i in range(3)]
    reps = Representations(["e0", "e1", "e2"], np.array([[2, 0], [0, 1], [1, 1]], np.float32),
                           ["v0", "v1", "v2"], np.array([[1, 0], [0, 3], [1, 1]], np.float32), ["a", "b", "b"])
    # task a: e0 (1), e2 (.71), e1 (0); task b: e1 (1), e2 (1, a tie: the lower row first), e0 (.71)
    sel = run_selector("rds+", SelectionContext(pool, artifacts={"representations": reps}), 3)
    assert sel.ids == ["e0", "e1", "e2"]
    assert sel.scores == pytest.approx([1, 1, 1 / np.sqrt(2)], abs=1e-6)
    assert sel.diagnostics["picked_for_task"] == {"a": 2, "b": 1}
    assert run_selector("rds+", SelectionContext(pool, artifacts={"representations": reps}), 2).ids == ["e0", "e1"]
