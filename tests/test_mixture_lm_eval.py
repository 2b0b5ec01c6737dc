"""The mixture benchmark's multiple-choice scoring equals lm-evaluation-harness's on the same MMLU
items (issue 24 point 4): lm-eval run offline through a local task over the benchmark's own test
file, with the chat template; the same per-option log-likelihoods, so the same acc and acc_norm.

The tiny test model runs in every test run; SmolLM2 (the untuned model of the benchmark) on a
small slice where its converted folder can be built (``smollm2`` fixture), marked slow.
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from instruct_select.experiments.mixture_data import MixtureSizes, write_lm_eval_task, write_mixture
from tests.conftest import SHARED

DATA = SHARED / "data" / "real"
pytestmark = pytest.mark.skipif(not (DATA / "mmlu_test.jsonl").is_file(), reason=f"{DATA} is not here")


def _ours(model_dir, tests_file):
    from instruct_select.data.loading import load_test_sets
    from instruct_select.evaluate.capabilities import _choices, prepare_items
    from instruct_select.models.loading import load_base_model, load_tokenizer

    model, tokenizer = load_base_model(model_dir, dtype="float32", device="cpu"), load_tokenizer(model_dir)
    from instruct_select.evaluate.multiple_choice import encode_question

    items = prepare_items(load_test_sets(tests_file), "exact")
    outcomes = _choices(model, tokenizer, items)
    for item, outcome in zip(items, outcomes):
        context = tokenizer.apply_chat_template(item.prompt, add_generation_prompt=True, tokenize=False)
        question = encode_question(tokenizer, context, item.record["choices"])
        outcome["tokens"] = len(question.context_ids) + max(len(ids) for ids in question.option_ids)
    return outcomes


def _lm_eval(model_dir, folder, task, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install 'instruct_select[lmeval]'")
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    results = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32", "device": "cpu"}, tasks=[task],
        num_fewshot=0, batch_size=1, apply_chat_template=True, log_samples=True,  # batched, lm-eval pads
        task_manager=TaskManager(include_path=str(folder), include_defaults=False), verbosity="ERROR")
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return results["results"][task], [[float(r[0]) for r in s["filtered_resps"]] for s in samples]


def _compare(model_dir, tmp_path, monkeypatch, n: int, max_tokens: int = 8192):
    sizes = dataclasses.replace(MixtureSizes.tiny(), tests={"knowledge": n, "reasoning": 1, "math": 1, "coding": 1,
                                                            "instruction": 1})
    write_mixture(DATA, tmp_path / "data", sizes)
    tests_file = tmp_path / "data" / "tests" / "knowledge.jsonl"
    task = write_lm_eval_task(tests_file, tmp_path / "tasks")
    ours = _ours(model_dir, tests_file)
    theirs, their_lls = _lm_eval(model_dir, tmp_path / "tasks", task, monkeypatch)
    assert len(ours) == len(their_lls) == n
    for mine, lls in zip(ours, their_lls):
        if mine["tokens"] <= max_tokens:  # lm-eval cuts longer ones to the model's positions; we do not
            assert mine["loglikelihoods"] == pytest.approx(lls, rel=1e-6, abs=1e-4)  # float32 sums
    if max_tokens < 8192:  # the accuracy check needs every item scored alike
        assert sum(o["tokens"] <= max_tokens for o in ours) >= n // 2
        return None
    acc = sum(o["acc"] for o in ours) / n
    acc_norm = sum(o["acc_norm"] for o in ours) / n
    assert abs(100 * acc - 100 * theirs["acc,none"]) <= 1.0
    assert abs(100 * acc_norm - 100 * theirs["acc_norm,none"]) <= 1.0
    return acc, acc_norm


def test_tiny_model_scores_as_lm_eval(tiny_model_dir, tmp_path, monkeypatch):
    # The tiny model has 512 positions: items longer than that are compared by SmolLM2 below.
    _compare(tiny_model_dir, tmp_path, monkeypatch, n=8, max_tokens=512)


@pytest.mark.slow
def test_smollm2_scores_mmlu_as_lm_eval(smollm2, tmp_path, monkeypatch, request):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread is the faster (no contention)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    acc, acc_norm = _compare(smollm2, tmp_path, monkeypatch, n=6)
    assert 0 <= acc <= 1 and 0 <= acc_norm <= 1


def test_task_file_holds_the_same_items(tmp_path):
    write_mixture(DATA, tmp_path / "data", MixtureSizes.tiny())
    tests_file = tmp_path / "data" / "tests" / "knowledge.jsonl"
    write_lm_eval_task(tests_file, tmp_path / "tasks", name="k")
    ours = [json.loads(x) for x in tests_file.read_text().splitlines()]
    theirs = [json.loads(x) for x in (tmp_path / "tasks" / "k.jsonl").read_text().splitlines()]
    assert [(t["choices"], t["answer"]) for t in theirs] == [(o["choices"], o["answer"]) for o in ours]
    assert "task: k" in (tmp_path / "tasks" / "k.yaml").read_text()
