"""RDS+ (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning"): cosine between
position-weighted mean-pooled base-model states, max over each target task's validation examples,
then round-robin over the tasks.

Follows hamishivi/automated-instruction-selection:

- representations: ``minimal_multitask/compute_influence_cosinesim.py --pooling weighted_mean``
  (see ``features/representations.py``); pool and validation vectors are L2-normalised and
  compared by inner product (cosine);
- a pool example's score for a target task: the max over that task's validation examples
  (``minimal_multitask/get_top_aggregated_influences.py``, ``--selection_method max``, which
  reduces each task's score file with ``max``);
- across tasks, its default ``--aggregation_method minmax``: each task's pool ranking sorted by that
  score, then the tasks take turns (in a fixed order, here sorted task names), each turn popping the
  task's next-best example; an example another task already took is not added again, and that turn
  adds nothing (the reference keeps a dict keyed by example), until the budget is full.

The ranking is the order of the picks, which does not depend on the budget, so every prefix is the
selection at that size. A pool example's score is the cosine of the task whose turn picked it.
Ties in a task's ranking go to the lower pool row (stable sort).

``rds`` (last-token states of the *warmed* model, max over all validation examples) stays a method
of its own: it is the representation baseline of the LESS and BIDS papers, and keeping both shows
what RDS+'s three changes (pooling, base model, per-task round-robin) buy.
"""
from __future__ import annotations

import numpy as np

from ..errors import ArtifactMismatchError
from .base import BaseSelector, Ranking, SelectionContext

BLOCK = 8192  # pool rows per similarity block: the (rows x |V|) cosines never exist whole


def unit_rows(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` (N x d) as float32 unit vectors (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def task_max_cosine(pool: np.ndarray, validation: np.ndarray, tasks: list[str]) -> tuple[np.ndarray, list[str]]:
    """(N, tasks): each pool row's max cosine over each task's validation rows; tasks sorted by name."""
    names = sorted(set(tasks))
    columns = [np.flatnonzero(np.asarray(tasks) == name) for name in names]
    pool, validation = unit_rows(pool), unit_rows(validation)
    out = np.empty((len(pool), len(names)), dtype=np.float32)
    for start in range(0, len(pool), BLOCK):
        cosine = pool[start:start + BLOCK] @ validation.T
        for k, cols in enumerate(columns):
            out[start:start + BLOCK, k] = cosine[:, cols].max(axis=1)
    return out, names


def round_robin(scores: np.ndarray, limit: int) -> tuple[list[int], list[int]]:
    """Rows picked by the tasks' turns (columns of ``scores``, in order) and the task of each pick."""
    orders = [np.argsort(-scores[:, k], kind="stable") for k in range(scores.shape[1])]
    limit = min(limit, scores.shape[0])
    taken: set[int] = set()
    picks: list[int] = []
    by: list[int] = []
    turn = 0
    while len(picks) < limit:  # each order is a permutation of the rows: the loop ends
        k, depth = turn % len(orders), turn // len(orders)
        row = int(orders[k][depth])
        if row not in taken:
            taken.add(row)
            picks.append(row)
            by.append(k)
        turn += 1
    return picks, by


class RdsPlusSelector(BaseSelector):
    """``rds+`` (Ivison et al. 2025): pool examples by their max cosine to each target task's
    validation examples (``representations``: position-weighted mean base-model hidden states),
    the tasks taking turns."""

    name = "rds+"
    needs = ("representations",)
    description = ("RDS+: cosine of position-weighted mean base-model states, max per target task, "
                   "round-robin over tasks")

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """Pool ids in the tasks' turns (``task_round_robin``), at most ``limit`` (a count); scores:
        the task-max cosine of each pick."""
        reps = selection.need("representations")  # features.representations.Representations
        if set(reps.pool_ids) != {e.id for e in selection.pool}:
            raise ArtifactMismatchError("the representations were computed for another pool; recompute them")
        scores, tasks = task_max_cosine(reps.pool, reps.validation, reps.validation_tasks)
        return task_round_robin(scores, tasks, reps.pool_ids, limit)


def task_max(similarity: np.ndarray, tasks: list[str]) -> tuple[np.ndarray, list[str]]:
    """(N, tasks): each row's max over each task's columns of a similarity matrix; tasks sorted."""
    names = sorted(set(tasks))
    return np.stack([similarity[:, np.asarray(tasks) == name].max(axis=1) for name in names], axis=1), names


def task_round_robin(scores: np.ndarray, tasks: list[str], ids: list[str], limit: int) -> Ranking:
    """RDS+'s selection from per-task scores (N x tasks, tasks in ``tasks`` order): the tasks take
    turns; each pick is scored by the task whose turn took it."""
    picks, by = round_robin(scores, limit)
    counts = {name: 0 for name in tasks}
    for k in by:
        counts[tasks[k]] += 1
    return Ranking([ids[i] for i in picks], [float(scores[i, k]) for i, k in zip(picks, by)],
                   {"picked_for_task": counts})
