"""bfloat16 models: LoRA weights and Adam moments stay float32, gradient features are accumulated
in float32, and they match a float32 model's features (cosine >= 0.99 per example).

The CUDA case is what users run (marked ``gpu``, skipped without CUDA); the CPU case runs the same
code paths everywhere, so that a machine without a GPU still checks them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from instruct_select.config import FeatureSettings, LoraSettings, TrainSettings
from instruct_select.data.example import Example
from instruct_select.features.extract import TokenizedData, extract_features
from instruct_select.features.gradients import lora_modules
from instruct_select.features.optimizer_state import AdamMoments
from instruct_select.features.store import FeatureStore
from instruct_select.models.loading import add_lora, load_base_model
from instruct_select.train.checkpoint import load_weights_into
from instruct_select.train.loop import train_model

DEVICES = [pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                              reason="needs CUDA")]),
           "cpu"]


def _examples(n: int = 12) -> list[Example]:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "sea", "city", "five", "hello", "world", "answer", "is"]
    return [Example(f"e{i}", "t", [{"role": "user", "content": " ".join(rng.choice(words, 6 + i % 5))},
                                   {"role": "assistant", "content": " ".join(rng.choice(words, 3 + i % 7))}])
            for i in range(n)]


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_features_match_float32(tiny_model_dir, tiny_tokenizer, tmp_path, device):
    examples = _examples()
    train = TrainSettings(epochs=1, learning_rate=5e-3, warmup_ratio=0.05, batching="token_budget", token_budget=256,
                          max_batch_size=4, max_length=64,
                          lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    # The warmup itself in bfloat16: adapters and optimizer state must be float32.
    warm = train_model(load_base_model(tiny_model_dir, "bfloat16", device), tiny_tokenizer, examples, train,
                       tmp_path / "warmup", progress=False, log=lambda m: None)
    assert all(np.isfinite(warm.epoch_losses))
    assert {p.dtype for p in warm.model.parameters() if p.requires_grad} == {torch.float32}
    checkpoint = warm.checkpoints[-1]
    assert {t.dtype for moments in checkpoint.moments() for t in moments.values()} == {torch.float32}

    settings = FeatureSettings(dim=256, dtype="float32", token_budget=256, max_batch_size=4, max_length=64)
    data = TokenizedData.of(tiny_tokenizer, examples, settings.max_length)
    features = {}
    for dtype in ("float32", "bfloat16"):
        model = add_lora(load_base_model(tiny_model_dir, dtype, device), train.lora)
        load_weights_into(model, checkpoint)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        moments = AdamMoments(checkpoint, list(lora_modules(model)), device)
        assert {t.dtype for t in moments.exp_avg.values()} == {torch.float32}
        for transform in ("sgd", "adam"):
            store = FeatureStore.open_or_create(tmp_path / f"{dtype}-{transform}", [e.id for e in examples],
                                                settings.dim, "float32", {})
            extract_features(model, data, store, settings, moments=moments if transform == "adam" else None,
                             progress=False)
            features[dtype, transform] = store.block(0, len(examples))
    for transform in ("sgd", "adam"):
        full, half = features["float32", transform], features["bfloat16", transform]
        cosine = np.sum(full * half, axis=1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1))
        assert cosine.min() >= 0.99, (transform, cosine.round(4).tolist())
