"""Golden cases for response-only loss masks, truncation and the one loss."""
from __future__ import annotations

import pytest
import torch

from instruct_select.data.chat import (
    IGNORE_INDEX, PLAIN_TEMPLATE, ensure_chat_template, tokenize_example, tokenize_examples,
)
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError, InputError
from instruct_select.loss import per_example_loss


def _labelled_text(tokenizer, item) -> list[str]:
    """Decode each maximal run of labelled tokens."""
    runs, current = [], []
    for token, label in zip(item.input_ids, item.labels):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_single_turn_golden(tiny_tokenizer):
    ex = Example("a", "t", [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}])
    item = tokenize_example(tiny_tokenizer, ex, 512)
    assert _labelled_text(tiny_tokenizer, item) == ["5<|end|>\n"]
    full = tiny_tokenizer.apply_chat_template(ex.messages, tokenize=False)
    assert tiny_tokenizer.decode(list(item.input_ids)) == full
    # The context part equals what generation is given: the prompt with the generation marker.
    prompt = tiny_tokenizer.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert list(item.input_ids[: len(prompt_ids)]) == prompt_ids
    assert all(label == IGNORE_INDEX for label in item.labels[: len(prompt_ids)])
    assert all(label != IGNORE_INDEX for label in item.labels[len(prompt_ids):])


def test_multi_turn_with_system_golden(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "and 12?"},
        {"role": "assistant", "content": "hello world"},
    ]
    item = tokenize_example(tiny_tokenizer, Example("b", None, messages), 512)
    assert _labelled_text(tiny_tokenizer, item) == ["5<|end|>\n", "hello world<|end|>\n"]
    assert item.n_response_tokens == len(tiny_tokenizer("5<|end|>\nhello world<|end|>\n", add_special_tokens=False)["input_ids"])
    assert not item.truncated


def test_plain_template_masks(tiny_tokenizer):
    ensure_chat_template(tiny_tokenizer, "plain")
    assert tiny_tokenizer.chat_template == PLAIN_TEMPLATE
    ex = Example("c", None, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    item = tokenize_example(tiny_tokenizer, ex, 512)
    assert _labelled_text(tiny_tokenizer, item) == ["hello<|end|>\n\n"]


def test_template_that_rewrites_history_is_refused(tiny_tokenizer):
    # Renders only the last message: earlier turns vanish, so no prefix relation holds.
    tiny_tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}"
    ex = Example("d", None, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(ConfigError, match="prefix-stable"):
        tokenize_example(tiny_tokenizer, ex, 512)


def test_truncation_reported_and_empty_response_excluded(tiny_tokenizer):
    long_prompt = "hello world " * 30
    keep = Example("keep", None, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "5"}])
    cut = Example("cut", None, [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "5"}])
    items, report = tokenize_examples(tiny_tokenizer, [keep, cut], max_length=20)
    assert [i.id for i in items] == ["keep"]
    assert report.no_response == ["cut"] and report.truncated == 1
    assert "cut" in report.summary() and "max_length" in report.summary()
    assert all(len(i) <= 20 for i in items)
    with pytest.raises(InputError, match="raise max_length"):
        tokenize_examples(tiny_tokenizer, [cut], max_length=20)


def test_missing_template_is_a_clear_error(tiny_tokenizer):
    tiny_tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        ensure_chat_template(tiny_tokenizer)


def test_per_example_loss_matches_manual():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX], [IGNORE_INDEX, 1, 2, 3, 6]])
    got = per_example_loss(logits, labels)
    manual = []
    for row in range(2):
        terms = [
            -torch.log_softmax(logits[row, t - 1], -1)[labels[row, t]]
            for t in range(1, 5) if labels[row, t] != IGNORE_INDEX
        ]
        manual.append(torch.stack(terms).mean())
    torch.testing.assert_close(got, torch.stack(manual))
