"""SmolLM2-135M-Instruct through every stage: `instruct-select run` end to end, on a few dozen short
examples (about 1.5 minutes on two idle cores), checking what can fail on a real model and template:
ChatML masks against a hand rendering, finite unit-norm features, budgets, adapters that load back,
and IDEAL's K-FAC statistics. Every selector selects; one selection is fine-tuned and evaluated
(the loop is the same for all, and each fine-tuning costs seconds here)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
import yaml

from instruct_select.cli import main
from instruct_select.data.chat import IGNORE_INDEX, tokenize_example
from instruct_select.data.example import Example

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
METHODS = ["random", "less", "bids", "instance-max", "sum", "normalized", "task-balanced", "rds", "rds+", "ifd",
           "lp-hard", "lp-easy", "lp-random", "full"]
TASKS = ("math", "code", "chat")


def _conversation(task: str, i: int, rng: random.Random) -> list[dict]:
    if task == "math":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        return [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a + b}"}]
    if task == "code":
        k = rng.randint(2, 9)
        return [{"role": "user", "content": f"Write a Python lambda that multiplies x by {k}."},
                {"role": "assistant", "content": f"lambda x: x * {k}"}]
    word = rng.choice(["sky", "grass", "snow", "coal", "sun", "rose"])
    return [{"role": "user", "content": f"What colour is {word}? One word."},
            {"role": "assistant", "content": {"sky": "blue", "grass": "green", "snow": "white", "coal": "black",
                                              "sun": "yellow", "rose": "red"}[word]}]


def _write_data(root: Path) -> None:
    """An imbalanced pool (16 math, 8 code, 6 chat), 2 validation and 3 test examples per task."""
    rng = random.Random(0)
    with open(root / "pool.jsonl", "w", encoding="utf-8") as f:
        for task, n in zip(TASKS, (16, 8, 6)):
            for i in range(n):
                f.write(json.dumps({"id": f"{task}-{i}", "task": task,
                                    "messages": _conversation(task, i, rng)}) + "\n")
    for split, n in (("validation", 2), ("tests", 3)):
        (root / split).mkdir()
        for task in TASKS:
            rows = [{"id": f"{split}-{task}-{i}", "task": task, "messages": _conversation(task, i, rng)}
                    for i in range(n)]
            (root / split / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _config(model: Path, root: Path) -> dict:
    train = {"learning_rate": 1e-3, "warmup_ratio": 0.05, "batching": "token_budget", "token_budget": 1024,
             "max_batch_size": 16, "max_length": 64,
             "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
    return {"model": str(model), "pool": str(root / "pool.jsonl"), "validation": str(root / "validation"),
            "tests": str(root / "tests"), "run_dir": str(root / "run"), "methods": METHODS, "budgets": ["20%"],
            "dtype": "float32", "device": "cpu", "finetune": False,
            "influence": {"warmup": {**train, "epochs": 1},
                          "features": {"dim": 512, "dtype": "float32", "token_budget": 1024, "max_length": 64}},
            "learning_percentage": {"epochs": 1, "variant": "lp_app", "clusters": 3},
            "train": {**train, "epochs": 1, "save_checkpoints": False},
            "eval": {"max_new_tokens": 8, "batch_size": 16, "max_length": 64}}


def test_chatml_masks_cover_exactly_the_assistant_tokens(smollm2):
    from instruct_select.models.loading import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    messages = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "5"},
                {"role": "user", "content": "And times 4?"}, {"role": "assistant", "content": "20, since 5 × 4 = 20."}]
    item = tokenize_example(tokenizer, Example("x", "t", messages), 512)
    # The template by hand: a default system turn, then <|im_start|>ROLE\nCONTENT<|im_end|>\n per message.
    pieces = [(SYSTEM, False)]
    for m in messages:
        pieces.append((f"<|im_start|>{m['role']}\n", False))
        pieces.append((f"{m['content']}<|im_end|>\n", m["role"] == "assistant"))
    ids, labels = [], []
    for text, labelled in pieces:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += tokens
        labels += tokens if labelled else [IGNORE_INDEX] * len(tokens)
    assert list(item.input_ids) == ids and list(item.labels) == labels
    assert tokenizer.decode([t for t in item.labels if t != IGNORE_INDEX]) == (
        "5<|im_end|>\n20, since 5 × 4 = 20.<|im_end|>\n")


def test_run_end_to_end_on_smollm2(smollm2, tmp_path):
    from instruct_select.features.store import FeatureStore
    from instruct_select.models.loading import load_base_model, load_trained
    from instruct_select.select.selection import read_selected_ids

    _write_data(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(smollm2, tmp_path)))
    assert main(["--quiet", "run", str(path)]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert set(results["arms"]) == {m if m == "full" else f"{m} @ 20%" for m in METHODS}
    for label, arm in results["arms"].items():
        ids = read_selected_ids(arm["selection"])
        assert len(ids) == (30 if label == "full" else 6) and len(set(ids)) == len(ids)
    # One selection fine-tuned and evaluated, on the artifacts of the first run (reused, not redone).
    assert main(["--quiet", "run", str(path), "methods=[bids]", "finetune=true"]) == 0
    summary = json.loads((run / "results.json").read_text())["arms"]["bids @ 20%"]["summary"]
    assert set(summary["scores"]) == set(TASKS) and all(np.isfinite(v) for v in summary["loss"].values())
    # Features: finite, unit norm, for pool (Adam) and validation (SGD) examples.
    for split, n in (("pool", 30), ("validation", 6)):
        for epoch in (1,):
            store = FeatureStore.open(run / "influence" / "features" / split / f"epoch-{epoch}")
            features = np.asarray(store.features, dtype=np.float64)
            assert features.shape == (n, 512) and np.isfinite(features).all()
            np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-4)
    # The trained adapter loads back over its base and changed the model.
    batch = torch.tensor([[1, 504, 3458, 30, 2]])
    with torch.no_grad():
        trained = load_trained(run / "bids-20pct-seed0" / "train" / "model")(input_ids=batch).logits
        base = load_base_model(smollm2)(input_ids=batch).logits
    assert torch.isfinite(trained).all() and not torch.allclose(trained, base, atol=1e-4)


def test_kfac_domain_influences_on_smollm2(smollm2):
    from instruct_select.data.chat import tokenize_examples
    from instruct_select.ideal.domain_gradients import Mixture, PassSettings, SolveSettings, compute_influences
    from instruct_select.models.loading import load_base_model, load_tokenizer

    rng = random.Random(1)
    examples = [Example(f"{t}-{i}", t, _conversation(t, i, rng)) for t in TASKS for i in range(4)]
    tokenizer = load_tokenizer(smollm2)
    items, _ = tokenize_examples(tokenizer, examples, 64)
    reference, _ = tokenize_examples(tokenizer, [Example("r", "math", _conversation("math", 0, rng))], 64)
    cfg = PassSettings(pad_id=tokenizer.pad_token_id, token_budget=1024, batch_size=16, fisher="sampled", seed=0)
    solve = SolveSettings(layers=["model.layers.29.mlp.down_proj"], damping=0.1, relative=True)
    result = compute_influences(load_base_model(smollm2), Mixture(items, {e.id: e.task for e in examples}), reference,
                                cfg, solve)
    assert set(result.influences) == set(TASKS) and all(np.isfinite(v) for v in result.influences.values())
    assert np.isfinite(result.reference_loss) and len(result.scores) == len(examples)
