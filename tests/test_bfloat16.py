"""bfloat16 models: LoRA weights and Adam moments stay float32, gradient features are accumulated
in float32, and they match a float32 model's features (cosine >= 0.99 per example).

Both bfloat16 paths are checked: bfloat16 weights (what ``dtype: auto`` picks on CUDA and on a CPU
with AVX512-BF16 or AMX) and float32 weights with the body under bfloat16 autocast (``bfloat16-autocast``).
The CUDA case is what users run (marked ``gpu``, skipped without CUDA); the CPU case runs the same
code paths everywhere, so that a machine without a GPU still checks them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from instruct_select.config import FeatureSettings, LoraSettings, TrainSettings
from instruct_select.data.batching import collate
from instruct_select.data.example import Example
from instruct_select.features.extract import TokenizedData, extract_features
from instruct_select.features.gradients import lora_modules
from instruct_select.features.optimizer_state import AdamMoments
from instruct_select.features.store import FeatureStore
from instruct_select.run import context
from instruct_select.run.context import RunContext
from instruct_select.errors import ConfigError
from instruct_select.loss import model_per_example_loss
from instruct_select.models import loading
from instruct_select.models.loading import AUTOCAST, add_lora, load_base_model, resolve_dtype
from instruct_select.train.checkpoint import load_weights_into
from instruct_select.train.loop import train_model

CUDA = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DEVICES = [pytest.param("cuda", marks=CUDA), "cpu"]
HALF = [pytest.param("cuda", "bfloat16", marks=CUDA), pytest.param("cuda", AUTOCAST, marks=CUDA),
        ("cpu", "bfloat16"), ("cpu", AUTOCAST)]


def _examples(n: int = 12) -> list[Example]:
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "sea", "city", "five", "hello", "world", "answer", "is"]
    return [Example(f"e{i}", "t", [{"role": "user", "content": " ".join(rng.choice(words, 6 + i % 5))},
                                   {"role": "assistant", "content": " ".join(rng.choice(words, 3 + i % 7))}])
            for i in range(n)]


@pytest.mark.parametrize("device, half", HALF)
def test_bfloat16_features_match_float32(tiny_model_dir, tiny_tokenizer, tmp_path, device, half):
    examples = _examples()
    train = TrainSettings(epochs=1, learning_rate=5e-3, warmup_ratio=0.05, batching="token_budget", token_budget=256,
                          max_batch_size=4, max_length=64,
                          lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    # The warmup itself in bfloat16: adapters and optimizer state must be float32.
    warm = train_model(load_base_model(tiny_model_dir, half, device), tiny_tokenizer, examples, train,
                       tmp_path / "warmup")
    assert all(np.isfinite(warm.epoch_losses))
    assert {p.dtype for p in warm.model.parameters() if p.requires_grad} == {torch.float32}
    checkpoint = warm.checkpoints[-1]
    assert {t.dtype for moments in checkpoint.moments() for t in moments.values()} == {torch.float32}

    settings = FeatureSettings(dim=256, dtype="float32", token_budget=256, max_batch_size=4, max_length=64)
    data = TokenizedData.of(tiny_tokenizer, examples, settings.max_length)
    features = {}
    for dtype in ("float32", half):
        model = add_lora(load_base_model(tiny_model_dir, dtype, device), train.lora)
        load_weights_into(model, checkpoint)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        moments = AdamMoments(checkpoint, list(lora_modules(model)), device)
        assert {t.dtype for t in moments.exp_avg.values()} == {torch.float32}
        for transform in ("sgd", "adam"):
            store = FeatureStore.open_or_create(tmp_path / f"{dtype}-{transform}", [e.id for e in examples],
                                                settings.dim, "float32", {})
            extract_features(model, data, store, settings, moments=moments if transform == "adam" else None)
            features[dtype, transform] = store.block(0, len(examples))
    for transform in ("sgd", "adam"):
        full, low = features["float32", transform], features[half, transform]
        cosine = np.sum(full * low, axis=1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(low, axis=1))
        assert cosine.min() >= 0.99, (transform, cosine.round(4).tolist())


def test_auto_picks_bfloat16_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(loading, "cpu_has_fast_bfloat16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    assert RunContext(dtype="auto", device="cpu").dtype == "bfloat16"  # what the run's manifests record
    monkeypatch.setattr(loading, "cpu_has_fast_bfloat16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    assert RunContext(dtype="auto", device="cpu").dtype == "float32"
    for given in ("float32", "bfloat16", AUTOCAST, "float16"):
        assert resolve_dtype(given, "cpu") == given
    with pytest.raises(ConfigError, match="dtype must be one of"):
        resolve_dtype("bf16", "cpu")
    assert context.resolve_dtype is resolve_dtype


def test_cpu_bfloat16_probe_agrees_with_the_cpu_flags():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    assert loading.cpu_has_fast_bfloat16() == ("avx512_bf16" in flags or "amx_bf16" in flags
                                               or "amx_tile" in flags)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_picks_bfloat16_weights_on_cuda():
    assert resolve_dtype("auto", "cuda") == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")


def test_autocast_runs_the_body_in_bfloat16_and_the_loss_in_float32(tiny_model_dir, tiny_tokenizer):
    """Weights and LoRA stay float32; the body's products are bfloat16; the head, the logits and the
    losses are float32; autocast is left after every forward, even one that raises."""
    model = add_lora(load_base_model(tiny_model_dir, AUTOCAST, "cpu"),
                     LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)
        return hook

    base = model.get_base_model()
    handles = [base.model.layers[0].mlp.down_proj.register_forward_hook(record("mlp")),
               base.lm_head.register_forward_hook(record("head"))]
    data = TokenizedData.of(tiny_tokenizer, _examples(4), 64)
    losses = model_per_example_loss(model, collate(data.items, tiny_tokenizer.pad_token_id))
    for handle in handles:
        handle.remove()
    assert seen == {"mlp": torch.bfloat16, "head": torch.float32} and losses.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")
    losses.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with pytest.raises(Exception):
        model(input_ids=torch.tensor([[10 ** 6]]))  # an id beyond the vocabulary: the forward raises
    assert not torch.is_autocast_enabled("cpu")


def test_generation_under_autocast_casts_the_weights_once_with_the_same_answers(tiny_model_dir, tiny_tokenizer,
                                                                                monkeypatch):
    from instruct_select.evaluate import generation

    model = load_base_model(tiny_model_dir, AUTOCAST, "cpu")
    weights = {name: (p, p.detach().clone(), p.data_ptr()) for name, p in model.named_parameters()}
    prompts = [[{"role": "user", "content": e.messages[0]["content"]}] for e in _examples(6)]
    seen = []
    handle = model.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda m, i, o: seen.append(m.weight.dtype) and None)
    cast_once = generation.generate_greedy(model, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=4)
    assert set(seen) == {torch.bfloat16}  # decoding read bfloat16 copies
    seen.clear()
    monkeypatch.setattr(generation, "autocast_weights_cast_once", lambda model: contextlib.nullcontext())
    assert generation.generate_greedy(model, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=4) == cast_once
    assert set(seen) == {torch.float32}  # the plain path: autocast cast float32 weights at each step
    handle.remove()
    # Every weight is its own float32 tensor again.
    assert all(p.data_ptr() == pointer and p.dtype == torch.float32 and torch.equal(p, value)
               for p, value, pointer in weights.values())


def test_auto_is_the_default_of_run_configs_ideal_and_the_commands():
    import dataclasses

    from instruct_select.cli import build_parser
    from instruct_select.config import RunConfig
    from instruct_select.ideal.settings import IdealSettings

    assert {f.name: f.default for f in dataclasses.fields(RunConfig)}["dtype"] == "auto"
    assert {f.name: f.default for f in dataclasses.fields(IdealSettings)}["dtype"] == "auto"
    parser = build_parser()
    for command in (["train", "--model", "m", "--data", "d", "--out", "o"], ["evaluate", "--model", "m", "--tests", "t"]):
        assert parser.parse_args(command).dtype == "auto"
