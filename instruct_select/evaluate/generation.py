"""Batched greedy generation from chat prompts, for scoring a model on held-out test sets.

Prompts are rendered with the tokenizer's own chat template (which carries BOS, so tokenising adds
no special tokens), sorted by length so each batch wastes little padding, left-padded so every
row's new tokens start at the same column, and decoded back in the caller's order. Greedy decoding
must not depend on the batch: the tests check batched output against one prompt at a time.
``model.generate`` reads each step's keys and values of earlier tokens from its cache. An answer
ends at any token that ends a turn (``stop_token_ids``): the tokenizer's eos, the model's own
generation_config eos ids, and the chat template's end-of-turn token (ChatML's <|im_end|>,
Llama-3's <|eot_id|>), so checkers never read a run-on into the next turn.

Run on the model's own device (CPU or CUDA); nothing here moves the model.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import GenerationConfig, GenerationMixin

from instruct_select.errors import ConfigError, InputError
from instruct_select.logs import progress_bar
from instruct_select.models.loading import autocast_weights_cast_once

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


# The assistant's words in the conversation rendered to find where the template ends a turn.
TURN_PROBE = "Probe answer"


def end_of_turn_ids(tokenizer) -> list[int]:
    """The special token the chat template writes right after an assistant's words (ChatML's
    <|im_end|>, Llama-3's <|eot_id|>, Gemma's <end_of_turn>), or [] when it writes none (a template
    that ends turns in plain text cannot be stopped on a token; its answers end at eos).

    Found by rendering a two-turn conversation and reading the first token after the assistant's
    words that is not whitespace: it counts only when it is a special token."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Probe question"}, {"role": "assistant", "content": TURN_PROBE}],
            tokenize=False)
    except Exception:  # noqa: BLE001  (a template may refuse this conversation; then eos alone stops)
        return []
    at = text.rfind(TURN_PROBE)
    if at < 0:
        return []
    specials = set(tokenizer.all_special_ids) | {
        i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    for token in tokenizer(text[at + len(TURN_PROBE):], add_special_tokens=False)["input_ids"]:
        if token in specials:
            return [token]
        if tokenizer.decode([token]).strip():
            return []
    return []


def _eos_ids(value) -> list[int]:
    """A generation_config's eos_token_id: None, an int or a list of ints."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends an answer: the tokenizer's eos, the model's own
    ``generation_config.eos_token_id`` (an int or a list, as Llama-3-Instruct's [<|end_of_text|>,
    <|eot_id|>]; a PEFT wrapper's base included) and the chat template's end-of-turn token."""
    found = _eos_ids(tokenizer.eos_token_id)
    for module in model.modules():
        config = getattr(module, "generation_config", None)
        if isinstance(module, GenerationMixin) and config is not None:
            found += _eos_ids(config.eos_token_id)
    found += end_of_turn_ids(tokenizer)
    stops = list(dict.fromkeys(found))
    if not stops:
        raise ConfigError("the tokenizer has no eos_token, and neither the model's generation_config nor the "
                          "chat template names a token that ends a turn; generation would never stop")
    return stops


def _pad_id(tokenizer, stops: list[int]) -> int:
    """The pad id; it falls back to a stop token, which is harmless under an attention mask."""
    return stops[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def _left_pad(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists right-aligned: (input_ids, attention_mask)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _greedy_config(max_new_tokens: int, stops: list[int], pad_id: int) -> GenerationConfig:
    # use_cache: each new token's forward reads the keys and values of the tokens before it from the
    # cache instead of recomputing them (the default; stated because the model's own config is blanked).
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=pad_id,
        use_cache=True,
    )


@contextmanager
def _plain_generation_defaults(model) -> Iterator[None]:
    """Blank the model's own generation_config for the duration of the call.

    ``generate`` fills every setting the caller leaves unset from ``model.generation_config``, and
    a checkpoint's generation_config.json may set repetition_penalty, min_new_tokens, extra
    eos ids or contrastive-search knobs that would change even greedy output (its eos ids are read
    before, by ``stop_token_ids``, and passed explicitly). Swapping in a blank
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


def _decode_until_eos(tokenizer, new_ids: list[int], stops: int | Sequence[int]) -> str:
    """Decode a row's new tokens up to its first stop token; what follows is padding, which need
    not be a special token that skip_special_tokens would drop."""
    stops = {stops} if isinstance(stops, int) else set(stops)
    end = next((i for i, token in enumerate(new_ids) if token in stops), len(new_ids))
    return tokenizer.decode(new_ids[:end], skip_special_tokens=True)


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
) -> list[str]:
    """Greedy responses to chat prompts, in the order given.

    Each prompt is a list of {"role", "content"} messages ending with a user turn. Generation
    stops at any of ``stop_token_ids`` (eos, the model's eos ids, the template's end of turn) or
    after ``max_new_tokens``; only the new tokens are
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
    stops = stop_token_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, stops)
    config = _greedy_config(max_new_tokens, stops, pad_id)
    device = _model_device(model)
    order = _length_order(encoded)
    responses: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _plain_generation_defaults(model), autocast_weights_cast_once(model), \
                progress_bar(total=len(prompts), desc="generating", unit="prompt") as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                ids, mask = _left_pad([encoded[i] for i in batch], pad_id, device)
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                for i, new in zip(batch, out[:, ids.shape[1]:].tolist()):
                    responses[i] = _decode_until_eos(tokenizer, new, stops)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return responses
