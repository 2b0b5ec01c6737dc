"""The fine-tuning loop: deterministic, name-keyed Adam moments, per-epoch mean learning rates."""
from __future__ import annotations

import logging
import pytest
import torch

from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.data.batching import collate, token_budget_batches
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.example import Example
from instruct_select.models.loading import load_base_model, load_trained
from instruct_select.train.checkpoint import list_checkpoints, load_weights_into
from instruct_select.train.loop import epoch_steps, save_trained, train_model
from instruct_select.train.schedule import lr_at


def _examples(n=24):
    return [
        Example(f"ex{i}", "math" if i % 2 else "chat",
                [{"role": "user", "content": "What is " + " + ".join(["2"] * (1 + i % 5)) + "?"},
                 {"role": "assistant", "content": str(2 * (1 + i % 5))}])
        for i in range(n)
    ]


def _settings(**kw):
    return TrainSettings(**{"epochs": 2, "learning_rate": 5e-3, "warmup_ratio": 0.05, "batching": "token_budget",
                            "token_budget": 128, "max_length": 64, "lora": LoraSettings(r=4, alpha=8, dropout=0.0), **kw})


def test_training_is_deterministic_and_checkpoints_match_optimizer(tiny_model_dir, tiny_tokenizer, tmp_path):
    runs = []
    for name in ("a", "b"):
        model = load_base_model(tiny_model_dir)
        result = train_model(model, tiny_tokenizer, _examples(), _settings(), tmp_path / name)
        runs.append(result)
    wa = {n: p for n, p in runs[0].model.named_parameters() if p.requires_grad}
    wb = {n: p for n, p in runs[1].model.named_parameters() if p.requires_grad}
    assert wa.keys() == wb.keys() and len(wa) > 0
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0)
    # LoRA B starts at zero: training must have moved it.
    assert any(p.abs().sum() > 0 for n, p in wa.items() if "lora_B" in n)
    assert runs[0].epoch_losses == runs[1].epoch_losses

    checkpoints = list_checkpoints(tmp_path / "a")
    assert [c.epoch for c in checkpoints] == [1, 2]
    exp_avg, exp_avg_sq = checkpoints[-1].moments()
    assert set(exp_avg) == set(wa) == set(exp_avg_sq)
    assert all(torch.all(v >= 0) for v in exp_avg_sq.values())
    assert checkpoints[-1].beta1 == 0.9 and checkpoints[-1].beta2 == 0.999 and checkpoints[-1].eps == 1e-8
    # The last checkpoint's weights are the final weights.
    for name, value in checkpoints[-1].weights().items():
        torch.testing.assert_close(value, wa[name].detach())


@pytest.mark.parametrize("batching, schedule", [("token_budget", "linear"), ("examples", "cosine")])
def test_epoch_mean_learning_rate_matches_schedule(tiny_model_dir, tiny_tokenizer, tmp_path, batching, schedule):
    settings = _settings(epochs=3, schedule=schedule, warmup_ratio=0.2, batching=batching, batch_size=10)
    model = load_base_model(tiny_model_dir)
    result = train_model(model, tiny_tokenizer, _examples(), settings, tmp_path)
    items, _ = tokenize_examples(tiny_tokenizer, _examples(), settings.max_length)
    # Each epoch regroups the examples, so its step count is its own (token_budget mode).
    per_epoch = [len(epoch_steps(items, settings, e)) for e in range(settings.epochs)]
    if batching == "examples":
        assert per_epoch == [3, 3, 3]  # ceil(24 / 10) optimizer steps per epoch
    total = sum(per_epoch)
    assert result.steps == total
    lrs = [lr_at(s, total, settings.learning_rate, schedule, 0.2) for s in range(total)]
    for c in result.checkpoints:
        window = lrs[sum(per_epoch[:c.epoch - 1]): sum(per_epoch[:c.epoch])]
        assert c.mean_lr == pytest.approx(sum(window) / len(window))
    assert result.checkpoints[0].mean_lr != result.checkpoints[-1].mean_lr


def test_checkpoint_weights_load_into_fresh_model(tiny_model_dir, tiny_tokenizer, tmp_path):
    model = load_base_model(tiny_model_dir)
    result = train_model(model, tiny_tokenizer, _examples(), _settings(epochs=1), tmp_path)
    save_trained(result.model, tiny_tokenizer, tmp_path / "model")
    reloaded = load_trained(tmp_path / "model")
    batch = collate(tokenize_examples(tiny_tokenizer, _examples(4), 64)[0], tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        want = result.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want)
    # A checkpoint restores the same weights into a freshly wrapped model.
    fresh = load_trained(tmp_path / "model", trainable=True)
    with torch.no_grad():
        for p in fresh.parameters():
            if p.requires_grad:
                p.zero_()
    load_weights_into(fresh, result.checkpoints[0])
    params = dict(fresh.named_parameters())
    for name, value in result.checkpoints[0].weights().items():
        torch.testing.assert_close(params[name].detach(), value)


def test_full_finetune_trains_every_weight(tiny_model_dir, tiny_tokenizer, tmp_path):
    model = load_base_model(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train_model(model, tiny_tokenizer, _examples(8), _settings(epochs=1, full_finetune=True),
                         tmp_path)
    changed = [n for n, p in result.model.named_parameters() if not torch.equal(p, before[n])]
    assert "model.layers.0.mlp.up_proj.weight" in changed
    exp_avg, _ = result.checkpoints[0].moments()
    assert "model.layers.0.mlp.up_proj.weight" in exp_avg


def test_batches_respect_budget_and_are_order_independent(tiny_tokenizer):
    items, _ = tokenize_examples(tiny_tokenizer, _examples(30), 64)
    batches = token_budget_batches(items, 100, 8, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(len(items)))
    for b in batches:
        assert len(b) <= 8 and len(b) * max(len(items[i]) for i in b) <= 100 or len(b) == 1
    shuffled = list(reversed(items))
    again = token_budget_batches(shuffled, 100, 8, seed=3, epoch=1)
    assert [[items[i].id for i in b] for b in batches] == [[shuffled[i].id for i in b] for b in again]
    assert token_budget_batches(items, 100, 8, seed=3, epoch=2) != batches


def test_interrupted_training_resumes_to_the_same_weights(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch, caplog):
    import instruct_select.train.loop as loop

    settings = _settings(epochs=3, lora=LoraSettings(r=4, alpha=8, dropout=0.1))
    full = train_model(load_base_model(tiny_model_dir), tiny_tokenizer, _examples(), settings, tmp_path / "a")
    real_save = loop.save_checkpoint

    def crash_after_first(path, model, optimizer, facts):
        result = real_save(path, model, optimizer, facts)
        if facts["epoch"] == 1:
            raise KeyboardInterrupt("killed")
        return result

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_model(load_base_model(tiny_model_dir), tiny_tokenizer, _examples(), settings, tmp_path / "b")
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        resumed = train_model(load_base_model(tiny_model_dir), tiny_tokenizer, _examples(), settings, tmp_path / "b")
    assert any("resuming" in m and "after epoch 1" in m for m in caplog.messages)
    want = dict(full.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, want[name], rtol=0, atol=0)
    assert resumed.epoch_losses == pytest.approx(full.epoch_losses)
    assert [c.mean_lr for c in resumed.checkpoints] == [c.mean_lr for c in full.checkpoints]


def _one_step_settings(**kw):
    # One optimizer step on every weight. Adam's first update is lr * g / (|g| + eps): with eps = 1
    # far above these gradients it is about lr * g, so a wrongly weighted example would show in the
    # weights instead of vanishing into sign(g). No clipping: it would rescale both runs alike anyway.
    return _settings(epochs=1, full_finetune=True, learning_rate=1.0, adam_epsilon=1.0, max_grad_norm=0.0,
                     schedule="constant", warmup_ratio=0.0, save_checkpoints=False, **kw)


def test_accumulated_step_equals_one_big_batch(tiny_model_dir, tiny_tokenizer):
    from instruct_select.loss import model_per_example_loss

    examples = _examples(12)
    items, _ = tokenize_examples(tiny_tokenizer, examples, 64)
    micro = token_budget_batches(items, 64, 3)
    # Several micro-batches of different widths and sizes, so the weighting matters.
    assert len(micro) >= 4 and len({max(len(items[i]) for i in b) for b in micro}) >= 2
    assert len({len(b) for b in micro}) >= 2
    big = _one_step_settings(batching="token_budget", token_budget=64 * 12, max_batch_size=12)
    accumulated = _one_step_settings(batching="examples", batch_size=12, token_budget=64, max_batch_size=3)
    base = load_base_model(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    results = [train_model(load_base_model(tiny_model_dir), tiny_tokenizer, examples, s)
               for s in (big, accumulated)]
    assert [r.steps for r in results] == [1, 1]
    assert results[0].epoch_losses == pytest.approx(results[1].epoch_losses, abs=1e-6)
    one, acc = (dict(r.model.named_parameters()) for r in results)
    moved = max(float((one[n].detach() - before[n]).abs().max()) for n in before)
    assert moved > 1e-2
    for name in before:
        torch.testing.assert_close(acc[name], one[name], rtol=0, atol=1e-5)

    # The test can fail: weighting each micro-batch by its own mean (what a loop that steps on
    # micro-batch means would do) moves the gradient by far more than the tolerance.
    def gradient(weights):
        model = load_base_model(tiny_model_dir)
        for b, w in zip(micro, weights):
            (model_per_example_loss(model, collate([items[i] for i in b], tiny_tokenizer.pad_token_id)).sum() * w).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    right = gradient([1 / 12] * len(micro))
    wrong = gradient([1 / (len(micro) * len(b)) for b in micro])
    assert float((right - wrong).abs().max()) > 100 * 1e-5


def test_two_processes_accumulate_like_one(tiny_model_dir, tmp_path):
    """Examples mode under torch.distributed (gloo, 2 CPU processes): each process packs its half of
    every step into its own micro-batches; the all-reduced update equals one process's."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(f"""
import json, sys, torch
from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.distributed import init_from_environment, is_main
from instruct_select.models.loading import load_base_model, load_tokenizer
from instruct_select.train.loop import train_model
from instruct_select.data.example import Example
init_from_environment()
examples = [Example(*row) for row in json.load(open("examples.json"))]
settings = TrainSettings(epochs=2, learning_rate=5e-3, warmup_ratio=0.05, batching="examples", batch_size=10,
                         token_budget=64, max_batch_size=2, max_length=64, save_checkpoints=False,
                         lora=LoraSettings(r=4, alpha=8, dropout=0.0))
result = train_model(load_base_model({str(tiny_model_dir)!r}), load_tokenizer({str(tiny_model_dir)!r}),
                     examples, settings)
if is_main():
    torch.save({{n: p.detach() for n, p in result.model.named_parameters() if p.requires_grad}}, sys.argv[1])
""")
    (tmp_path / "examples.json").write_text(json.dumps([[e.id, e.task, e.messages] for e in _examples()]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for nproc in (1, 2):
        command = [sys.executable, str(script), str(tmp_path / "w1.pt")] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
            str(script), str(tmp_path / "w2.pt")]
        out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    one, two = torch.load(tmp_path / "w1.pt"), torch.load(tmp_path / "w2.pt")
    assert one.keys() == two.keys() and any(v.abs().sum() > 0 for n, v in one.items() if "lora_B" in n)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)
