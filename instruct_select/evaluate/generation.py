"""Batched greedy generation from chat prompts, for scoring a model on held-out test sets.

Prompts are rendered with the tokenizer's own chat template (which carries BOS, so tokenising adds
no special tokens), sorted by length so each batch wastes little padding, left-padded so every
row's new tokens start at the same column, and decoded back in the caller's order. Greedy decoding
must not depend on the batch: the tests check batched output against one prompt at a time.

Run on the model's own device (CPU or CUDA); nothing here moves the model.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, GenerationMixin

from instruct_select.errors import ConfigError, InputError

Messages = list[dict[str, str]]


def render_prompts(tokenizer, prompts: Sequence[Messages]) -> list[list[int]]:
    """Token ids of each prompt rendered by the chat template, ready for the assistant's turn."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            "the tokenizer has no chat template; set tokenizer.chat_template (or load a "
            "tokenizer that ships one) before evaluating"
        )
    texts = []
    for index, messages in enumerate(prompts):
        if not messages or messages[-1].get("role") != "user":
            raise InputError(
                f"prompt {index} must end with a user turn to be answered; "
                f"it ends with {messages[-1].get('role') if messages else 'nothing'!r}"
            )
        texts.append(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    # The template already writes BOS; add_special_tokens=True would add a second one.
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _special_ids(tokenizer) -> tuple[int, int]:
    """(eos, pad) ids; pad falls back to eos, which is harmless under an attention mask."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token; generation would never stop")
    pad = tokenizer.pad_token_id
    return eos, eos if pad is None else pad


def _left_pad(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists right-aligned: (input_ids, attention_mask)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _greedy_config(max_new_tokens: int, eos_id: int, pad_id: int) -> GenerationConfig:
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


@contextmanager
def _plain_generation_defaults(model) -> Iterator[None]:
    """Blank the model's own generation_config for the duration of the call.

    ``generate`` fills every setting the caller leaves unset from ``model.generation_config``, and
    a checkpoint's generation_config.json may set repetition_penalty, min_new_tokens, extra
    eos ids or contrastive-search knobs that would change even greedy output. Swapping in a blank
    config on every generating module (a PEFT wrapper generates through the model it wraps) makes
    the result depend only on the weights; the originals are put back afterwards.
    """
    saved = []
    for module in model.modules():
        own = getattr(module, "generation_config", None)
        if isinstance(module, GenerationMixin) and own is not None:
            saved.append((module, own))
            module.generation_config = GenerationConfig()
    try:
        yield
    finally:
        for module, config in saved:
            module.generation_config = config


def _model_device(model) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _decode_until_eos(tokenizer, new_ids: list[int], eos_id: int) -> str:
    """Decode a row's new tokens up to its first eos; what follows is padding, which need not be
    a special token that skip_special_tokens would drop."""
    if eos_id in new_ids:
        new_ids = new_ids[:new_ids.index(eos_id)]
    return tokenizer.decode(new_ids, skip_special_tokens=True)


def _length_order(encoded: Sequence[list[int]]) -> list[int]:
    """Indices longest first: batches of similar length pad little, and any out-of-memory error
    comes from the first batch instead of after most of the work is done."""
    return sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))


def generate_greedy(
    model,
    tokenizer,
    prompts: list[Messages],
    max_new_tokens: int = 32,
    batch_size: int = 64,
    progress: bool = True,
) -> list[str]:
    """Greedy responses to chat prompts, in the order given.

    Each prompt is a list of {"role", "content"} messages ending with a user turn. Generation
    stops at ``tokenizer.eos_token_id`` or after ``max_new_tokens``; only the new tokens are
    decoded, with special tokens skipped. The model is put in eval mode for the call and returned
    to its previous mode afterwards.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError(
            f"max_new_tokens and batch_size must be at least 1 "
            f"(got max_new_tokens={max_new_tokens}, batch_size={batch_size})"
        )
    if not prompts:
        return []
    encoded = render_prompts(tokenizer, prompts)
    eos_id, pad_id = _special_ids(tokenizer)
    config = _greedy_config(max_new_tokens, eos_id, pad_id)
    device = _model_device(model)
    order = _length_order(encoded)
    responses: list[str] = [""] * len(prompts)
    show = progress and sys.stderr.isatty()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _plain_generation_defaults(model), tqdm(
            total=len(prompts), desc="generating", unit="prompt", disable=not show
        ) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                ids, mask = _left_pad([encoded[i] for i in batch], pad_id, device)
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                for i, new in zip(batch, out[:, ids.shape[1]:].tolist()):
                    responses[i] = _decode_until_eos(tokenizer, new, eos_id)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return responses
