"""Pretraining the lab's tiny Llama base models on the lab corpus (plain language modelling).

This plays the part of a pretrained LLM: the model learns the world's facts and skills from plain
statements, so that instruction tuning elicits them. The corpus is tokenised once, cut into
fixed-length blocks (documents joined by the end token) and trained on with AdamW and a cosine
schedule. Seeded: the same corpus, tokenizer and spec give the same weights on the same machine.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ..logs import progress_bar
from ..train.schedule import lr_at

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabModelSpec:
    """Shape and pretraining budget of one lab model size."""

    hidden: int
    layers: int
    heads: int
    # Many small steps rather than few large ones: a tiny model memorises facts per update, and
    # short blocks cost less attention. About 1.6M tokens seen in all at the defaults.
    epochs: float = 6.0
    block: int = 64
    batch_size: int = 16
    learning_rate: float = 6e-3

    def config(self, tokenizer, max_positions: int = 512):
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden,
            intermediate_size=4 * self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=max_positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
        )


MODEL_SIZES: dict[str, LabModelSpec] = {
    "small": LabModelSpec(hidden=64, layers=2, heads=4),
    "large": LabModelSpec(hidden=128, layers=4, heads=4, learning_rate=4e-3),
}


def corpus_blocks(documents: list[str], tokenizer, block: int) -> torch.Tensor:
    """All documents tokenised, each framed as ``<|bos|> text <|end|>``, cut into (n_blocks, block).

    The begin token matters: a chat prompt starts with it, so the base model must have seen text
    follow it (a tiny model is easily thrown by a first token it never saw).
    """
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for ids in encoded:
        stream.append(tokenizer.bos_token_id)
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    n = len(stream) // block
    return torch.tensor(stream[: n * block], dtype=torch.long).view(n, block)


def pretrain(documents: list[str], tokenizer, spec: LabModelSpec, seed: int):
    """A freshly initialised Llama of shape ``spec`` trained on ``documents``."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(spec.config(tokenizer))
    blocks = corpus_blocks(documents, tokenizer, spec.block)
    per_epoch = max(1, len(blocks) // spec.batch_size)
    total = max(1, int(spec.epochs * per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95),
                                  weight_decay=0.01)
    order_rng = random.Random(seed)
    order: list[int] = []
    model.train()
    bar = progress_bar(range(total), desc=f"pretrain h{spec.hidden}x{spec.layers}")
    losses = []
    for step in bar:
        if len(order) < spec.batch_size:
            fresh = list(range(len(blocks)))
            order_rng.shuffle(fresh)
            order.extend(fresh)
        batch = blocks[order[: spec.batch_size]]
        del order[: spec.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, spec.learning_rate, "cosine", 0.02)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    tail = losses[-max(1, len(losses) // 10):]
    logger.info("[lab] pretrained h%dx%d (%.2fM params, %d blocks, %d steps): final loss %.3f", spec.hidden,
                spec.layers, sum(p.numel() for p in model.parameters()) / 1e6, len(blocks), total, sum(tail) / len(tail))
    model.eval()
    return model, {"steps": total, "blocks": int(len(blocks)), "final_loss": sum(tail) / len(tail),
                   "parameters": sum(p.numel() for p in model.parameters())}
