"""IFD: both losses against one example at a time with the one loss function, the response-alone
rendering against a hand rendering of the template, and the selection rule on a hand-made case."""
from __future__ import annotations

import logging
import numpy as np
import pytest
import torch

from instruct_select.data.chat import IGNORE_INDEX
from instruct_select.data.example import Example
from instruct_select.errors import InputError
from instruct_select.features.ifd import IfdLosses, fill_ifd_losses, ifd_pair
from instruct_select.select.base import SelectionContext
from instruct_select.select.selection import run_selector


def _examples() -> list[Example]:
    def ex(i, *turns):
        roles = ["user", "assistant"] * len(turns)
        return Example(f"e{i}", "t", [{"role": r, "content": c} for r, c in zip(roles, turns)])

    return [
        ex(0, "What is 2 + 3?", "The answer is 5."),
        Example("e1", "t", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
                            {"role": "assistant", "content": "world, how are you?"}]),
        ex(2, "Name the capital of Velkar.", "It is Orrin.", "And reverse: red green", "green red"),
        ex(3, "hi", "hello world, how are you today? I am fine, thanks! " * 3),  # cut by max_length
        ex(4, "Reverse the words: " + "red green blue " * 20, "blue"),  # no response token left
        ex(5, "hello", "hello"),
    ]


def _alone_by_hand(tokenizer, example: Example, keep: int) -> tuple[list[int], list[int]]:
    """The conftest template written out: BOS, then per assistant turn its header and the turn."""
    pieces = [("<|bos|>", False)]
    for m in example.messages:
        if m["role"] == "assistant":
            pieces += [("<|assistant|>\n", False), (m["content"] + "<|end|>\n", True)]
    ids, labels = [], []
    for text, is_response in pieces:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        if is_response:
            tokens = tokens[: keep - sum(t != IGNORE_INDEX for t in labels)]
        ids += tokens
        labels += tokens if is_response else [IGNORE_INDEX] * len(tokens)
    return ids, labels


def test_response_alone_is_the_template_without_the_prompt(tiny_tokenizer):
    for example in _examples():
        conditioned, alone = ifd_pair(tiny_tokenizer, example, 64)
        if not conditioned.n_response_tokens:  # e4: no IFD, never scored
            continue
        ids, labels = _alone_by_hand(tiny_tokenizer, example, conditioned.n_response_tokens)
        assert (list(alone.input_ids), list(alone.labels)) == (ids, labels), example.id
        # both losses average over the very same tokens
        assert [t for t in alone.labels if t != IGNORE_INDEX] == [t for t in conditioned.labels if t != IGNORE_INDEX]
    assert ifd_pair(tiny_tokenizer, _examples()[3], 64)[0].truncated


# SmolLM2-Instruct's template: ChatML, a default system turn when the conversation has none, no BOS.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_response_alone_under_chatml_keeps_only_the_assistant_turns(tiny_tokenizer):
    tiny_tokenizer.chat_template = SMOLLM2_TEMPLATE
    example = _examples()[2]  # two turns
    conditioned, alone = ifd_pair(tiny_tokenizer, example, 1000)
    text = tiny_tokenizer.decode(list(alone.input_ids))
    assert text == ("<|im_start|>assistant\nIt is Orrin.<|im_end|>\n"
                    "<|im_start|>assistant\ngreen red<|im_end|>\n")  # no system, no user turn, no BOS
    assert [t for t in alone.labels if t != IGNORE_INDEX] == [t for t in conditioned.labels if t != IGNORE_INDEX]


def test_ifd_losses_match_one_example_at_a_time(tiny_model_dir, tmp_path, caplog):
    from instruct_select.data.batching import Batching
    from instruct_select.features.store import FeatureStore
    from instruct_select.loss import per_example_loss
    from instruct_select.models.loading import load_base_model, load_tokenizer

    model, tokenizer = load_base_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    examples = _examples()
    store = FeatureStore.open_or_create(tmp_path / "s", [e.id for e in examples], 2, "float32", {})
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        fill_ifd_losses(model, tokenizer, examples, store, Batching(64, 4096, 64))
    assert store.complete() and "e4" in caplog.messages[0]
    got = IfdLosses(store.ids, store.features[:, 0].astype(float), store.features[:, 1].astype(float))

    def loss(ids, labels):  # one example, the full-logits loss
        with torch.no_grad():
            return per_example_loss(model(input_ids=torch.tensor([ids])).logits, torch.tensor([labels])).item()

    for example in examples:
        row = store.row_of[example.id]
        conditioned, _ = ifd_pair(tokenizer, example, 64)
        if not conditioned.n_response_tokens:
            assert np.isnan(store.features[row]).all() and np.isnan(got.ifd[row])
            continue
        expected = (loss(list(conditioned.input_ids), list(conditioned.labels)),
                    loss(*_alone_by_hand(tokenizer, example, conditioned.n_response_tokens)))
        np.testing.assert_allclose(store.features[row], expected, rtol=1e-4)
        assert got.ifd[row] == pytest.approx(expected[0] / expected[1], rel=1e-4)


def _losses(pairs: dict[str, tuple[float, float]]) -> IfdLosses:
    ids = list(pairs)
    return IfdLosses(ids, np.array([pairs[i][0] for i in ids]), np.array([pairs[i][1] for i in ids]))


def test_selection_keeps_the_highest_ifd_below_1():
    losses = _losses({"a": (1.0, 2.0),        # 0.5
                      "b": (1.8, 2.0),        # 0.9
                      "c": (2.0, 2.0),        # exactly 1: the instruction does not help, dropped
                      "d": (2.6, 2.0),        # 1.3: dropped
                      "e": (np.nan, np.nan),  # no response token: no IFD
                      "f": (1.9, 2.0),        # 0.95
                      "g": (1.0, 0.0),        # alone loss 0: no IFD
                      "h": (0.9, 1.0)})       # 0.9, a tie with b: the lower row (b) first
    pool = [Example(i, "t", [{"role": "user", "content": i}, {"role": "assistant", "content": i}])
            for i in losses.ids]
    sel = run_selector("ifd", SelectionContext(pool, artifacts={"ifd_losses": losses}), 4)
    assert sel.ids == ["f", "b", "h", "a"]
    assert sel.scores == pytest.approx([0.95, 0.9, 0.9, 0.5])
    assert sel.diagnostics["ifd"] == {"below_1": 4, "at_least_1": 2, "undefined": 2}
    assert run_selector("ifd", SelectionContext(pool, artifacts={"ifd_losses": losses}), 2).ids == ["f", "b"]
    with pytest.raises(InputError, match=r"only 4 of the 8 pool examples have IFD < 1 \(2 have IFD >= 1, 2 no IFD"):
        run_selector("ifd", SelectionContext(pool, artifacts={"ifd_losses": losses}), 5)
