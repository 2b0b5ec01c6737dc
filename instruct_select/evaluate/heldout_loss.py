"""Held-out loss: how well the model predicts each test example's reference answer.

Accuracy of a small model on hard benchmarks sits near the floor whatever it was trained on; the
loss of the reference answers still moves, and it is what LESS itself optimises. Each test
example is rendered exactly as training renders it (``data.chat.tokenize_example``: the tokenizer's
chat template, cut into context and response segments, truncated on the right at ``max_length``),
and scored with the one loss (``loss.model_per_example_loss``: token-mean cross-entropy, nats).

Only the reference answer counts: the last assistant turn, with the end-of-turn marker the
template writes after it. Earlier assistant turns (few-shot demonstrations) are context, as they
are in the prompt the model answers when its accuracy is measured; training labels them, so they
are unlabelled here. An example whose reference answer has no token left after truncation gets no
loss (``None``), and the caller counts and reports it.
"""
from __future__ import annotations

import torch

from instruct_select.data.batching import Batching, collate, token_budget_batches
from instruct_select.data.chat import IGNORE_INDEX, TokenizedExample, segment_conversation, tokenize_example
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError
from instruct_select.logs import progress_bar
from instruct_select.loss import model_per_example_loss


def _last_assistant(messages: list[dict]) -> int:
    roles = [m.get("role") for m in messages]
    return len(roles) - 1 - roles[::-1].index("assistant")


def reference_item(tokenizer, example: Example, max_length: int) -> TokenizedExample:
    """The example up to its last assistant turn, rendered as training renders it, with labels on
    that turn alone (the reference answer); truncated on the right to ``max_length`` tokens."""
    messages = example.messages[: _last_assistant(example.messages) + 1]
    conversation = Example(id=example.id, task=example.task, messages=messages, subtask=example.subtask)
    item = tokenize_example(tokenizer, conversation, max_length)
    # tokenize_example labels every assistant turn; the tokens before the last response segment
    # (counted segment by segment, as tokenize_example cuts them) are the context.
    segments = segment_conversation(tokenizer, messages, example.id)
    last = max(i for i, (_, is_response) in enumerate(segments) if is_response)
    context = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text, _ in segments[:last] if text)
    labels = list(item.labels)
    labels[:context] = [IGNORE_INDEX] * min(context, len(labels))
    return TokenizedExample(item.id, item.input_ids, labels, item.truncated)


def heldout_losses(model, tokenizer, examples: list[Example],
                   batching: Batching) -> tuple[list[float | None], list[bool]]:
    """Each example's reference-answer loss (``None`` when no answer token is left within
    ``batching.max_length``) and whether it was truncated, in the order of ``examples``.

    Examples are batched by length under the token budget (little padding, right-padded, masked);
    the tests check the batched losses against one example at a time.
    """
    # Padding is masked out of attention and labels, so any id will do; eos as generation uses.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ConfigError("the tokenizer has neither a pad nor an eos token; set a pad token before evaluating")
    items = [reference_item(tokenizer, e, batching.max_length) for e in examples]
    scored = [i for i, item in enumerate(items) if item.n_response_tokens > 0]
    losses: list[float | None] = [None] * len(items)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batches = token_budget_batches([items[i] for i in scored], batching.token_budget, batching.max_batch_size)
            for indices in progress_bar(batches, desc="held-out loss"):
                rows = [scored[j] for j in indices]
                values = model_per_example_loss(model, collate([items[i] for i in rows], pad_id))
                for i, value in zip(rows, values.float().cpu().tolist()):
                    losses[i] = value
    finally:
        model.train(was_training)
    return losses, [item.truncated for item in items]
