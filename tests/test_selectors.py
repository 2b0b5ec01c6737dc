"""One conformance test for every registered selector, and the influence baselines' rules."""
from __future__ import annotations

import numpy as np
import pytest

from instruct_select.data.example import Example
from instruct_select.errors import ArtifactMismatchError, ConfigError
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.select.registry import available_selectors, grid_selectors
from instruct_select.select.base import SelectionContext
from instruct_select.select.selection import run_selector

TASKS = ["code", "math", "logic"]


def _pool(n=50):
    return [Example(f"p{i:03d}", TASKS[i % 3], [{"role": "user", "content": str(i)},
                                                 {"role": "assistant", "content": "x"}]) for i in range(n)]


def _artifacts(pool, seed=0):
    rng = np.random.default_rng(seed)
    columns = [{"id": f"v{j}", "task": TASKS[j % 3], "subtask": f"s{j % 2}"} for j in range(9)]
    scores = rng.normal(size=(len(pool), len(columns))).astype(np.float32)
    matrix = AttributionMatrix(scores, [e.id for e in pool], columns, [])
    ids = [e.id for e in pool]
    states = {"pool": (ids, rng.normal(size=(len(pool), 6))), "validation": ([c["id"] for c in columns], rng.normal(size=(9, 6)))}
    from instruct_select.features.embeddings import Embeddings
    from instruct_select.features.trajectories import LossTrajectories

    from instruct_select.features.ifd import IfdLosses
    from instruct_select.features.representations import Representations

    # The draws below are frozen: tests/test_selector_grid.py holds the selections they gave before the
    # grid existed. A new artifact draws from its own generator (``embed`` below).
    n = len(pool)
    losses = np.column_stack([np.full(n, 2.0), 2.0 - rng.uniform(0.1, 1.0, n), np.full(n, 0.5)])
    # IFD: most below 1, some at or above it, two without a response token (NaN)
    conditioned, alone = rng.uniform(0.5, 2.0, n), rng.uniform(1.0, 2.5, n)
    conditioned[:2] = np.nan
    embed = np.random.default_rng(seed + 1000)
    return {"attribution": matrix, "hidden_states": states,
            "loss_trajectories": LossTrajectories.from_losses(ids, losses),
            "embeddings": Embeddings(ids, rng.normal(size=(n, 6)).astype(np.float32), {}),
            "representations": Representations(ids, rng.normal(size=(n, 6)).astype(np.float32),
                                               [c["id"] for c in columns], rng.normal(size=(9, 6)).astype(np.float32),
                                               [c["task"] for c in columns]),
            "ifd_losses": IfdLosses(ids, conditioned, alone),
            "encoder_embeddings": Representations(ids, embed.normal(size=(n, 5)).astype(np.float32),
                                                  [c["id"] for c in columns], embed.normal(size=(9, 5)).astype(np.float32),
                                                  [c["task"] for c in columns])}


@pytest.mark.parametrize("method", sorted({**available_selectors(), **grid_selectors()}))
def test_selector_conformance(method):
    """Every named method and every grid pair (``bids:rds+``): the budget met exactly, valid ids,
    the same selection whatever the pool's order, the selection's diagnostics."""
    pool = _pool()
    artifacts = _artifacts(pool)
    first = run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts), "7")
    again = run_selector(method, SelectionContext(list(reversed(pool)), seed=3, artifacts=artifacts), "7")
    pool_ids = {e.id for e in pool}
    expected = len(pool) if method == "full" else 7
    assert len(first.ids) == expected and len(set(first.ids)) == expected
    assert set(first.ids) <= pool_ids
    assert first.ids == again.ids  # deterministic, whatever the pool order
    assert (first.method, first.budget, first.seed) == (method, "7", 3)
    assert sum(first.diagnostics["composition"].values()) == expected
    assert len(run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts),
                            "20%").ids) == (len(pool) if method == "full" else 10)


def test_random_depends_on_seed():
    pool = _pool()
    assert run_selector("random", SelectionContext(pool, seed=1), 10).ids != \
        run_selector("random", SelectionContext(pool, seed=2), 10).ids


def test_influence_rules_against_plain_numpy():
    pool = _pool()
    art = _artifacts(pool)
    a = art["attribution"].scores
    ids = [e.id for e in pool]
    top = lambda s: [ids[i] for i in np.argsort(-s, kind="stable")[:5]]
    assert run_selector("instance-max", SelectionContext(pool, artifacts=art), 5).ids == top(a.max(1))
    assert run_selector("sum", SelectionContext(pool, artifacts=art), 5).ids == top(a.sum(1))
    z = (a - a.mean(0)) / a.std(0)
    assert run_selector("normalized", SelectionContext(pool, artifacts=art), 5).ids == top(z.max(1))
    cols = art["attribution"].columns
    subtasks = sorted({(c["task"], c["subtask"]) for c in cols})
    per = np.stack([a[:, [j for j, c in enumerate(cols) if (c["task"], c["subtask"]) == s]].mean(1) for s in subtasks], 1)
    assert run_selector("less", SelectionContext(pool, artifacts=art, options={"less_groups": "subtask"}),
                        5).ids == top(per.max(1))
    tasks = sorted({c["task"] for c in cols})
    per_task = np.stack([per[:, [k for k, s in enumerate(subtasks) if s[0] == t]].mean(1) for t in tasks], 1)
    assert run_selector("less", SelectionContext(pool, artifacts=art), 5).ids == top(per_task.max(1))


def test_less_task_max_is_not_won_by_a_small_noisy_group():
    """Task "a" has two one-column subtasks, task "b" four columns and no subtasks. Row 0 has one
    lucky column in a/s1; row 1 is consistently useful for b. LESS's rule (the mean over each
    target task, subtasks averaged first, then the max over tasks) prefers row 1; the max over
    (task, subtask) groups prefers row 0."""
    from instruct_select.influence.attribution import AttributionMatrix

    pool = [Example(f"p{i}", "t", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
            for i in range(3)]
    columns = [{"id": "a1", "task": "a", "subtask": "s1"}, {"id": "a2", "task": "a", "subtask": "s2"},
               *({"id": f"b{j}", "task": "b", "subtask": None} for j in range(4))]
    scores = np.array([[0.9, -0.5, 0.0, 0.0, 0.0, 0.0],   # task a: (0.9 - 0.5) / 2 = 0.2; max subtask 0.9
                       [0.0, 0.0, 0.5, 0.5, 0.5, 0.5],    # task b: 0.5
                       [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]], np.float32)
    art = {"attribution": AttributionMatrix(scores, [e.id for e in pool], columns, [])}
    assert run_selector("less", SelectionContext(pool, artifacts=art), 1).ids == ["p1"]
    assert run_selector("less", SelectionContext(pool, artifacts=art, options={"less_groups": "subtask"}),
                        1).ids == ["p0"]
    with pytest.raises(ConfigError, match="less_groups"):
        run_selector("less", SelectionContext(pool, artifacts=art, options={"less_groups": "cluster"}), 1)


def test_task_balanced_round_robin():
    pool = _pool(30)
    art = _artifacts(pool)
    sel = run_selector("task-balanced", SelectionContext(pool, artifacts=art), 7)
    assert sel.diagnostics["picked_for_task"] == {"code": 3, "logic": 2, "math": 2}


def test_score_matrix_from_another_pool_is_refused():
    pool = _pool()
    art = _artifacts(_pool(40))
    with pytest.raises(ArtifactMismatchError, match="another pool"):
        run_selector("bids", SelectionContext(pool, artifacts=art), 5)


def test_bids_refuses_unequal_validation_sizes():
    pool = _pool()
    art = _artifacts(pool)
    art["attribution"].columns[0]["task"] = "logic"  # code 2, logic 4, math 3
    with pytest.raises(Exception, match="equal number of validation examples per task"):
        run_selector("bids", SelectionContext(pool, artifacts=art), 5)
    assert len(run_selector("bids", SelectionContext(pool, artifacts=art, options={"allow_unequal_validation": True}),
                            5).ids) == 5


def test_aid_and_thi_diagnostics_by_hand():
    pool = _pool(6)
    columns = [{"id": "v0", "task": "code"}, {"id": "v1", "task": "code"}, {"id": "v2", "task": "math"}]
    scores = np.array([[1, 1, 0], [0, 0, 5], [2, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    art = {"attribution": AttributionMatrix(scores, [e.id for e in pool], columns, [])}
    sel = run_selector("instance-max", SelectionContext(pool, artifacts=art), 3)
    assert sel.ids == ["p001", "p002", "p000"]
    raw = sel.diagnostics["influence"]["raw"]
    assert raw["aid"] == pytest.approx({"code": (0 + 0 + 2 + 0 + 1 + 1) / 6, "math": (5 + 1 + 0) / 3})
    # Row sums per task: p001 code 0 / math 5; p002 code 2 / math 1; p000 code 2 / math 0.
    assert raw["thi"] == {"code": 2, "math": 1}
