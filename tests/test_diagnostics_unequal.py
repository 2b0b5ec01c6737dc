"""THI with unequal validation task sizes (issue 20): a task's influence on an example is compared
by its mean over the task's instances, not its sum, which would hand the peaks to the task with
more instances; with equal sizes the rule is the paper's sum, exactly (test_diagnostics.py)."""
from __future__ import annotations

import numpy as np
import pytest

from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.influence.diagnostics import influence_diagnostics


def test_a_task_with_more_instances_does_not_collect_the_peaks_by_its_size():
    # "big" has three instances of 0.5 (sum 1.5, mean 0.5); "small" one of 1.0 (sum and mean 1.0).
    columns = [{"id": "b0", "task": "big"}, {"id": "b1", "task": "big"}, {"id": "b2", "task": "big"},
               {"id": "s0", "task": "small"}]
    scores = np.array([[0.5, 0.5, 0.5, 1.0],
                       [0.5, 0.5, 0.5, 1.0],
                       [2.0, 2.0, 2.0, 1.0]], dtype=np.float32)
    got = influence_diagnostics(AttributionMatrix(scores, ["r0", "r1", "r2"], columns, []), ["r0", "r1", "r2"])
    assert got["thi_rule"] == "mean (unequal task sizes)"
    assert got["raw"]["thi"] == {"big": 1, "small": 2}  # the sum would say {"big": 3, "small": 0}
    assert got["raw"]["aid"] == pytest.approx({"big": 1.0, "small": 1.0})


def test_equal_task_sizes_keep_the_papers_sum():
    columns = [{"id": f"v{j}", "task": "ab"[j % 2]} for j in range(4)]
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = influence_diagnostics(AttributionMatrix(scores, ["r0", "r1", "r2"], columns, []), ["r0", "r2"])
    assert got["thi_rule"] == "sum"


def _thi_by_mean(values: np.ndarray, columns: list[dict], picked: list[int]) -> dict[str, int]:
    tasks = sorted({c["task"] for c in columns})
    thi = dict.fromkeys(tasks, 0)
    for i in picked:
        means = [np.mean([values[i, j] for j, c in enumerate(columns) if c["task"] == t]) for t in tasks]
        thi[tasks[int(np.argmax(means))]] += 1
    return thi


@pytest.mark.parametrize("seed", range(4))
def test_unequal_sizes_against_a_slow_reference(seed):
    rng = np.random.default_rng(seed)
    sizes = {"a": 1, "b": 3, "c": 5}
    columns = [{"id": f"{t}{j}", "task": t} for t, n in sizes.items() for j in range(n)]
    n_rows = 30
    scores = rng.normal(size=(n_rows, len(columns))).astype(np.float32) + 0.3  # positive-leaning, as influences are
    rows = [f"r{i}" for i in range(n_rows)]
    selected = rng.choice(rows, size=20, replace=False).tolist()
    got = influence_diagnostics(AttributionMatrix(scores, rows, columns, []), selected)
    picked = [rows.index(s) for s in selected]
    assert got["raw"]["thi"] == _thi_by_mean(scores.astype(np.float64), columns, picked)
    assert sum(got["normalised"]["thi"].values()) == len(selected)
