"""Selectors that rank rows of the attribution matrix A (N × |V|): LESS and the BIDS paper's baselines.

| name          | rule                                                                    |
|---------------|-------------------------------------------------------------------------|
| less          | task-max: each target task's mean (subtask means averaged first), max   |
|               | over target tasks, top B (``less_groups="subtask"``: max over subtasks) |
| instance-max  | max_j A_ij, top B                                                        |
| sum           | Σ_j A_ij, top B                                                          |
| normalized    | max_j Â_ij (columns standardised over all rows), top B                   |
| task-balanced | B/m rows per task by the task's mean score, round-robin, skipping taken  |

Ties in a top-B ranking go to the lower row index (a stable sort on the negated score).
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..errors import ArtifactMismatchError, ConfigError, InputError
from .base import BaseSelector, Ranking, SelectionContext

INFLUENCE_NEEDS = ("attribution",)


def pool_matrix(selection: SelectionContext) -> tuple[np.ndarray, list[str], list[dict]]:
    """The attribution matrix of ``selection`` restricted to the pool's scorable rows, in the
    matrix's row order: (A as float32 in memory, N x V; each row's pool id; each column's
    {"id", "task", "subtask"}). Refused when the matrix was computed for another pool."""
    matrix = selection.need("attribution")
    pool_ids = {e.id for e in selection.pool}
    if set(matrix.rows) != pool_ids:
        extra = sorted(set(matrix.rows) - pool_ids)[:1] or sorted(pool_ids - set(matrix.rows))[:1]
        raise ArtifactMismatchError(
            f"the score matrix covers other examples than the pool (e.g. {extra[0]!r}): it was computed "
            "for another pool; recompute features and scores for this one"
        )
    excluded = set(matrix.excluded)
    keep = [i for i, id_ in enumerate(matrix.rows) if id_ not in excluded]
    scores = np.asarray(matrix.scores, dtype=np.float32)
    if len(keep) != len(matrix.rows):
        scores = scores[keep]
    return scores, [matrix.rows[i] for i in keep], matrix.columns


def column_groups(columns: list[dict], key: str) -> dict[str, list[int]]:
    """Column indices grouped by ``key`` ("task", or "subtask": task/subtask pairs, a column with
    no subtask its task) of ``columns`` (each a {"task", "subtask", ...}); groups sorted by name."""
    groups: dict[str, list[int]] = defaultdict(list)
    for j, col in enumerate(columns):
        label = col.get(key) if key == "task" else (col.get("subtask") or col.get("task"))
        groups[f"{col.get('task')}/{label}" if key == "subtask" else str(label)].append(j)
    return dict(sorted(groups.items()))


def group_means(scores: np.ndarray, groups: dict[str, list[int]]) -> np.ndarray:
    """(N, number of groups): each row's mean score over each group's columns."""
    return np.stack([scores[:, cols].mean(axis=1) for cols in groups.values()], axis=1)


def task_means(scores: np.ndarray, columns: list[dict]) -> np.ndarray:
    """(N, target tasks): each row's mean influence on each target task, the task's subtask means
    averaged with equal weight where its columns carry subtasks (so a large subtask does not
    outweigh a small one), its columns' plain mean otherwise. Tasks in sorted name order."""
    per_task: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for j, col in enumerate(columns):
        per_task[str(col.get("task"))][str(col.get("subtask") or "")].append(j)
    return np.stack([group_means(scores, dict(per_task[task])).mean(axis=1) for task in sorted(per_task)], axis=1)


def _blockwise_mean_std(scores: np.ndarray, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass float64 column mean and population std, a row block at a time (no full temporary)."""
    n = scores.shape[0]
    total = np.zeros(scores.shape[1], dtype=np.float64)
    for start in range(0, n, block):
        total += scores[start:start + block].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(total)
    for start in range(0, n, block):
        deviation = scores[start:start + block].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", deviation, deviation)
    return mean, np.sqrt(squares / n)


def column_statistics(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Per-column mean and population std over all rows (float32), kept and zero-variance columns."""
    mean, std = _blockwise_mean_std(scores)
    dropped = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean))).tolist()
    keep = np.setdiff1d(np.arange(scores.shape[1]), dropped)
    if keep.size == 0:
        raise InputError("every score column has zero variance: the scores carry no information to select by")
    return mean.astype(np.float32), std.astype(np.float32), keep, dropped


def standardise_columns(scores: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Â = (A − μ_j) / σ_j over all rows (σ: population std), dropping zero-variance columns.

    Returns the standardised kept columns and the indices of the dropped ones.
    """
    mean, std, keep, dropped = column_statistics(scores)
    # One copy, then in-place arithmetic: peak memory is the input plus one matrix.
    out = np.array(scores[:, keep] if dropped else scores, dtype=np.float32, copy=True)
    out -= mean[keep]
    out /= std[keep]
    return out, dropped


def top_rows(score: np.ndarray, ids: list[str], limit: int) -> Ranking:
    """The ``limit`` (a count) ``ids`` with the highest ``score`` (one value per row), ties to the
    lower row; returns the Ranking with those scores."""
    order = np.argsort(-score, kind="stable")[:limit]
    return Ranking([ids[i] for i in order], score[order].astype(float).tolist())


class _TopByScore(BaseSelector):
    """A selector that scores each row of the attribution matrix once (``score``) and takes the top."""
    needs = INFLUENCE_NEEDS

    def score(self, scores: np.ndarray, columns: list[dict], options: dict) -> np.ndarray:
        """(N,) one score per row of ``scores`` (A: N pool rows x V validation columns); ``columns``:
        each column's {"id", "task", "subtask"}; ``options``: the selection options."""
        raise NotImplementedError

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """The ``limit`` (a count) pool ids with the highest ``score``; scores: that score."""
        scores, ids, columns = pool_matrix(selection)
        return top_rows(self.score(scores, columns, selection.options), ids, limit)


LESS_GROUPS = ("task", "subtask")


class LessSelector(_TopByScore):
    """LESS (Xia et al. 2024): a training example's influence on a target task is its mean
    influence over the task's validation examples; it is scored by its best target task.
    ``less_groups="subtask"`` takes the max over every (task, subtask) group instead, as LESS's
    code does within one target task (``.reshape(n, N_SUBTASKS, -1).mean(-1).max(-1)``)."""

    name = "less"
    description = "LESS task-max: mean influence per target task (subtasks averaged first), max over tasks, top B"

    def score(self, scores, columns, options):
        groups = options.get("less_groups", "task")
        if groups not in LESS_GROUPS:
            raise ConfigError(f"less_groups must be one of {', '.join(LESS_GROUPS)}, got {groups!r}")
        if groups == "subtask":
            return group_means(scores, column_groups(columns, "subtask")).max(axis=1)
        return task_means(scores, columns).max(axis=1)


class InstanceMaxSelector(_TopByScore):
    """``instance-max``: each pool row's max influence over single validation examples, top B."""

    name = "instance-max"
    description = "max influence over single validation instances, top B"

    def score(self, scores, columns, options):
        return scores.max(axis=1)


class SumSelector(_TopByScore):
    """``sum``: each pool row's summed influence over every validation example, top B."""

    name = "sum"
    description = "summed influence over all validation instances, top B"

    def score(self, scores, columns, options):
        return scores.sum(axis=1)


class NormalizedSelector(_TopByScore):
    """``normalized``: columns standardised over the pool, each row's max, top B."""

    name = "normalized"
    description = "instance-normalised influence (columns standardised), max over instances, top B"

    def score(self, scores, columns, options):
        return standardise_columns(scores)[0].max(axis=1)


class TaskBalancedSelector(BaseSelector):
    """``task-balanced``: B/m rows per target task by the task's mean influence, the tasks
    taking turns (m: the number of tasks)."""

    name = "task-balanced"
    needs = INFLUENCE_NEEDS
    description = "B/m rows per validation task by its mean influence, round-robin over tasks"

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """Pool ids in the tasks' turns, ``limit`` (a count) of them; scores: the task mean of
        each pick; diagnostics: the picks per task."""
        scores, ids, columns = pool_matrix(selection)
        groups = column_groups(columns, "task")
        per_task = group_means(scores, groups)
        orders = [np.argsort(-per_task[:, k], kind="stable") for k in range(per_task.shape[1])]
        cursors = [0] * len(orders)
        taken: set[int] = set()
        picked, picked_scores, picked_tasks = [], [], []
        while len(picked) < min(limit, len(ids)):
            for k, order in enumerate(orders):  # tasks in sorted name order
                if len(picked) >= limit:
                    break
                while cursors[k] < len(order) and order[cursors[k]] in taken:
                    cursors[k] += 1
                if cursors[k] == len(order):
                    continue
                row = int(order[cursors[k]])
                taken.add(row)
                picked.append(row)
                picked_scores.append(float(per_task[row, k]))
                picked_tasks.append(list(groups)[k])
        return Ranking([ids[i] for i in picked], picked_scores,
                       {"picked_for_task": dict(sorted(Counter(picked_tasks).items()))})
