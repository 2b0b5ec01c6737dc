"""IFD's two losses per example: the response given its prompt, and the response alone.

IFD (Li et al. 2023, "From Quantity to Quality", tianyi-lab/Cherry_LLM; Superfiltering, Li et al.
2024, tianyi-lab/Superfiltering) = loss(response | instruction) / loss(response alone), both
token-mean cross-entropies over the response's tokens.

*Conditioned*: the example rendered as training renders it (``data.chat.tokenize_example``): the
loss is exactly the training loss.

*Alone*: the reference code scores the output with the instruction removed:
Cherry_LLM's ``cherry_seletion/data_by_IFD.py`` keeps only the response header
(``'### Response:' + output``), Superfiltering's ``code_ifd/data_analysis.py`` tokenises the output
by itself. The chat-template equivalent used here is Cherry_LLM's: the template's start-of-sequence
token where it writes one (BOS), then for every assistant turn the template's own assistant header
(its generation prompt, e.g. ``<|im_start|>assistant\\n``) and the turn itself, with the system and
user turns left out. The response segments are the very texts, tokenised the very same way, that
carry the labels of the conditioned rendering, so both losses average over identical tokens, and
the first response token is predicted from the header in both. When truncation cut the conditioned
rendering, the alone rendering keeps the same number of response tokens, so the two losses still
cover the same tokens.

    out_dir/   a FeatureStore (dim 2: conditioned, alone; float32) with a manifest; resumable, split
               across processes or shard jobs (``run.producers.sharded``). An example with no response
               token left after truncation is stored as NaN and has no IFD.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import IGNORE_INDEX, TokenizedExample, segment_conversation, tokenize_example
from ..data.example import Example
from ..errors import ConfigError
from ..logs import progress_bar
from ..loss import model_per_example_loss
from .store import FeatureStore

logger = logging.getLogger(__name__)

CHUNK = 4096  # examples tokenised and scored at a time: bounded memory, and the store resumes per chunk
WRITE_EVERY_SECONDS = 2.0


@dataclass
class IfdLosses:
    """``conditioned[i]`` and ``alone[i]`` are example ``ids[i]``'s response losses (NaN: none)."""

    ids: list[str]
    conditioned: np.ndarray  # (N,) float64
    alone: np.ndarray  # (N,) float64

    @property
    def ifd(self) -> np.ndarray:
        """conditioned / alone; NaN where either loss is missing or the alone loss is not positive."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.conditioned / self.alone
            return np.where(np.isfinite(ratio) & (self.alone > 0), ratio, np.nan)


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _assistant_header(tokenizer, messages: list[dict], i: int, example_id: str) -> str:
    """The text the template adds to open assistant turn ``i`` (i >= 1): its generation prompt there."""
    before = _render(tokenizer, messages[:i], generation_prompt=False)
    prompt = _render(tokenizer, messages[:i], generation_prompt=True)
    if not prompt.startswith(before):
        raise ConfigError(f"example {example_id}: rendering with the generation prompt does not extend the rendering "
                          "without it, so the template's assistant header cannot be found for IFD's response-alone "
                          "loss; use a template that appends its generation prompt")
    return prompt[len(before):]


def tokenize_response_alone(tokenizer, example: Example, keep: int) -> TokenizedExample:
    """The example's assistant turns without the prompt (see the module docstring), cut after its
    first ``keep`` response tokens (the number the conditioned rendering kept)."""
    responses = [text for text, is_response in segment_conversation(tokenizer, example.messages, example.id)
                 if is_response]
    turns = [i for i, m in enumerate(example.messages) if m["role"] == "assistant"]
    # The sequence start token, where the template writes one (Superfiltering's tokenizer.encode adds it too).
    bos = tokenizer.bos_token or ""
    pieces = [(bos if bos and _render(tokenizer, example.messages, False).startswith(bos) else "", False)]
    for i, response in zip(turns, responses):
        pieces += [(_assistant_header(tokenizer, example.messages, i, example.id), False), (response, True)]
    input_ids: list[int] = []
    labels: list[int] = []
    left = keep  # response tokens still to take
    for text, is_response in pieces:
        if not text or (is_response and left == 0):
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if is_response:
            ids, left = ids[:left], left - len(ids[:left])
        input_ids.extend(ids)
        labels.extend(ids if is_response else [IGNORE_INDEX] * len(ids))
        if left == 0:
            break
    return TokenizedExample(example.id, input_ids, labels)


def ifd_pair(tokenizer, example: Example, max_length: int) -> tuple[TokenizedExample, TokenizedExample]:
    """The conditioned and the response-alone renderings of one example."""
    conditioned = tokenize_example(tokenizer, example, max_length)
    return conditioned, tokenize_response_alone(tokenizer, example, conditioned.n_response_tokens)


@torch.inference_mode()
def fill_ifd_losses(model, tokenizer, examples: list[Example], store: FeatureStore, batching: Batching) -> dict:
    """Write [conditioned loss, alone loss] of every pending example into ``store``.

    ``model``, ``tokenizer``: the causal LM that scores (its chat template renders); ``examples``:
    the pool; ``store``: a 2-column store keyed by example id (rows already there are kept);
    ``batching``: ``max_length`` tokens per rendering, ``token_budget`` padded tokens per batch.
    Losses are token-mean cross-entropy in nats; an example with no response token left gets NaN.
    Returns counts for the manifest (``computed``, ``no_response`` ids, ``truncated``).

    Both renderings of a chunk of examples go through the same length-sorted token-budget batches
    and the one loss (``loss.model_per_example_loss``).
    """
    model.eval()
    pending = set(store.pending_ids())
    todo = [e for e in examples if e.id in pending]
    no_response: list[str] = []
    truncated = 0
    bar = progress_bar(total=len(todo), desc="IFD losses")
    for start in range(0, len(todo), CHUNK):
        items: list[TokenizedExample] = []  # conditioned, alone, conditioned, alone, ...
        missing: list[str] = []
        for example in todo[start:start + CHUNK]:
            conditioned, alone = ifd_pair(tokenizer, example, batching.max_length)
            truncated += conditioned.truncated
            if conditioned.n_response_tokens:
                items += [conditioned, alone]
            else:
                missing.append(example.id)
        if missing:
            store.write(missing, np.full((len(missing), 2), np.nan))
        no_response += missing
        _score_pairs(model, tokenizer, items, store, batching)
        bar.update(min(CHUNK, len(todo) - start))
    bar.close()
    if no_response:
        shown = ", ".join(no_response[:5]) + (" ..." if len(no_response) > 5 else "")
        logger.warning("[ifd] %d examples have no response token left after truncation to %d tokens, so no IFD "
                       "(%s); raise influence.features.max_length to score them", len(no_response), batching.max_length,
                       shown)
    return {"computed": len(todo), "no_response": no_response, "truncated": truncated}


def _score_pairs(model, tokenizer, items: list[TokenizedExample], store: FeatureStore, batching: Batching) -> None:
    """Losses of ``items`` (pairs: conditioned, alone), each pair written once both are in."""
    losses = np.zeros(len(items))
    scored = np.zeros(len(items), dtype=bool)
    written = np.zeros(len(items) // 2, dtype=bool)
    last_write = time.monotonic()

    def write_ready() -> None:
        ready = np.flatnonzero(~written & scored.reshape(-1, 2).all(axis=1))
        if ready.size:
            store.write([items[2 * p].id for p in ready], losses.reshape(-1, 2)[ready])
            written[ready] = True

    for indices in token_budget_batches(items, batching.token_budget, batching.max_batch_size):
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        losses[indices] = model_per_example_loss(model, batch).float().cpu().numpy()
        scored[indices] = True
        # A store write flushes to disk: pairs go in every few seconds, so an interruption loses
        # only those.
        if time.monotonic() - last_write >= WRITE_EVERY_SECONDS:
            write_ready()
            last_write = time.monotonic()
    write_ready()
