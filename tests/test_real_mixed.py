"""The real mixed benchmark's data: imbalanced pool by source, equal validation sizes per target,
held-out tests, and benchmark data (BBH, GSM8K test) never in the pool."""
from __future__ import annotations

import json

import pytest

from conftest import SHARED
from instruct_select.data.loading import load_examples
from instruct_select.experiments.real_mixed import RealMixedSizes, write_real_mixed

DATA = SHARED / "data" / "real"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is not here (it comes with ../shared)")


def _texts(path) -> set[str]:
    return {json.dumps(e.messages, sort_keys=True) for e in load_examples(path).examples}


def test_pool_validation_and_tests(tmp_path):
    sizes = RealMixedSizes(pool={"math": 30, "code": 15, "chat": 5}, validation=3, test=4)
    counts = write_real_mixed(DATA, tmp_path, sizes, seed=0)
    assert counts["pool"] == {"math": 30, "code": 15, "chat": 5}
    assert counts["validation"] == {"math": 3, "code": 3, "chat": 3, "reasoning": 3}
    assert set(counts["tests"].values()) == {4} and set(counts["tests"]) == {"math", "code", "chat", "reasoning"}
    pool = load_examples(tmp_path / "pool.jsonl")
    assert {e.task for e in pool.examples} == {"math", "code", "chat"}  # no reasoning source in the pool
    pool_texts = _texts(tmp_path / "pool.jsonl")
    assert not pool_texts & _texts(tmp_path / "validation") and not pool_texts & _texts(tmp_path / "tests")
    gsm8k_test = {json.loads(line)["question"] for line in (DATA / "gsm8k_test.jsonl").read_text().splitlines()}
    assert not {e.messages[0]["content"] for e in pool.examples} & gsm8k_test
    assert all(sum(len(m["content"]) for m in e.messages) <= sizes.max_chars for e in pool.examples)
    # The same seed writes the same files.
    write_real_mixed(DATA, tmp_path / "again", sizes, seed=0)
    assert (tmp_path / "again" / "pool.jsonl").read_bytes() == (tmp_path / "pool.jsonl").read_bytes()


def test_demo_real_runs_the_small_real_comparison(tmp_path, monkeypatch):
    """`demo --real` wires the real benchmark at demo sizes: one budget, one seed, the demo methods
    (each a registered selector), into its run folder (the run itself is mocked here;
    tests/test_real_model_run.py runs the real model through every stage)."""
    from instruct_select import cli
    from instruct_select.experiments import real_mixed
    from instruct_select.models import real
    from instruct_select.select.registry import REGISTRY

    calls = {}

    def fake_run(model, data_dir, run_dir, grid, *, sizes, out):
        calls.update(model=model, run_dir=run_dir, budgets=grid.budgets, seeds=grid.seeds, methods=grid.methods,
                     sizes=sizes, out=out)
        return "| table |"

    monkeypatch.setattr(real_mixed, "run_real_mixed", fake_run)
    monkeypatch.setattr(real, "prepare_real_model", lambda name: f"/models/{name}")
    assert cli.main(["demo", "--real", "--run-dir", str(tmp_path / "demo")]) == 0
    assert calls["model"] == "/models/smollm2-135m" and calls["seeds"] == [0] and len(calls["budgets"]) == 1
    assert calls["methods"] == real_mixed.DEMO_METHODS
    assert all(m in REGISTRY for m in calls["methods"])
    assert calls["sizes"] == RealMixedSizes.demo() and str(calls["out"]).startswith(str(tmp_path / "demo"))
