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
