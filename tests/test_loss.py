"""The one loss without full-vocabulary logits: per-example losses and gradients equal the plain
path (logits at every position, then the masked mean), for LoRA and full fine-tuning, tied and
untied embeddings, and a model whose body is not called ``model`` (GPT-2)."""
from __future__ import annotations

import warnings

import pytest
import torch

from instruct_select.data.batching import collate
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.example import Example
from instruct_select.loss import backbone_and_head, labelled_positions_loss, model_per_example_loss, per_example_loss

QA = [("What is 2 + 3?", "5"), ("Name the capital of Velkar.", "It is Orrin, a city by the sea."),
      ("Reverse: red green blue", "blue green red"), ("hello", "hello world, how are you today?")]


def _batch(tokenizer):
    examples = [Example(f"e{i}", "t", [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
                for i, (q, a) in enumerate(QA)]
    items, _ = tokenize_examples(tokenizer, examples, 64)
    return collate(items, tokenizer.pad_token_id)


def _plain(model, batch):
    return per_example_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                            batch["labels"])


def _grads(model, losses):
    model.zero_grad()
    losses.sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _assert_same(model, batch, chunk):
    import instruct_select.loss as loss_module

    plain = _plain(model, batch)
    plain_grads = _grads(model, plain)
    original = loss_module.CHUNK_TOKENS
    loss_module.CHUNK_TOKENS = chunk  # several chunks on a small batch
    try:
        assert loss_module.chunk_positions(model.get_output_embeddings().out_features) == chunk
        chunked = model_per_example_loss(model, batch)
        chunked_grads = _grads(model, chunked)
    finally:
        loss_module.CHUNK_TOKENS = original
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-6)
    assert chunked_grads.keys() == plain_grads.keys() and chunked_grads
    for name in plain_grads:
        torch.testing.assert_close(chunked_grads[name], plain_grads[name], rtol=1e-5, atol=1e-6)
    # Per-example gradients (what the gradient features are made of): one example's loss at a time.
    for row in range(len(QA)):
        one = {k: v[row:row + 1] for k, v in batch.items()}
        torch.testing.assert_close(_grads(model, model_per_example_loss(model, one)), _grads(model, _plain(model, one)),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_lab_model(tiny_lab, lora):
    from instruct_select.config import LoraSettings
    from instruct_select.models.loading import add_lora, load_base_model, load_tokenizer

    model = load_base_model(tiny_lab.model("small"))
    if lora:
        model = add_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
        for name, p in model.named_parameters():  # non-zero B so that the adapters matter
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.05)
    _assert_same(model, _batch(load_tokenizer(tiny_lab.model("small"))), chunk=7)


def test_tied_embeddings(tiny_model_dir, tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tiny_tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    _assert_same(model, _batch(tiny_tokenizer), chunk=5)


def test_gpt2_body_is_not_called_model(tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=2, n_head=2,
                                       n_positions=128, bos_token_id=0, eos_token_id=1)).eval()  # no dropout
    assert backbone_and_head(model) is not None
    _assert_same(model, _batch(tiny_tokenizer), chunk=3)


def test_chunks_are_bounded_in_bytes_for_a_large_vocabulary():
    from instruct_select.loss import CHUNK_TOKENS, chunk_positions

    assert chunk_positions(512) == CHUNK_TOKENS  # the lab's vocabularies: chunks as before
    assert chunk_positions(49_152) == 341 and chunk_positions(128_256) == 130  # SmolLM2, Llama-3: <= 64 MiB


def test_no_labelled_position_gives_zero_and_a_model_with_scaled_logits_falls_back(tiny_model_dir):
    from instruct_select.models.loading import load_base_model

    hidden = torch.randn(2, 5, 8)
    labels = torch.full((2, 5), -100)
    assert labelled_positions_loss(hidden, labels, torch.nn.Linear(8, 11)).tolist() == [0.0, 0.0]
    model = load_base_model(tiny_model_dir)
    model.config.final_logit_softcapping = 30.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backbone_and_head(model) is None
    assert any("full-vocabulary logits" in str(w.message) for w in caught)
