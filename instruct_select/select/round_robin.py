"""Round-robin over validation examples (the selector of "A Critical Look at Targeted Instruction
Selection", Harvard-DCML 2026, arXiv 2602.14696; dcml-lab/targeted-instruction-selection,
``selection/round_robin.py``).

The validation examples take turns; at its turn an example takes its most similar pool example not
yet taken (ties: the lower pool row). Every turn adds one example, so the order of the picks is the
ranking, and any prefix is the selection at that size. The study selects for one target task at a
time and cycles over its query examples in order; here the target tasks (sorted by name) also take
turns, so each task gets an equal share of turns whatever its validation size: turn t goes to task
t mod T and, within it, to its validation example (t div T) mod V_task in column order. With one
target task this is the study's cycle.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .base import Ranking


def turn_order(tasks: list[str]) -> list[int]:
    """The columns in turn order for one full cycle of the longest task (tasks interleaved)."""
    by_task = [[j for j, t in enumerate(tasks) if t == name] for name in sorted(set(tasks))]
    longest = max(len(cols) for cols in by_task)
    return [cols[depth % len(cols)] for depth in range(longest) for cols in by_task]


def round_robin_naive(scores: np.ndarray, tasks: list[str], limit: int) -> tuple[list[int], list[int]]:
    """The rule as written (an argmax over the untaken rows per turn): the reference for the fast form."""
    order = turn_order(tasks)
    taken = np.zeros(scores.shape[0], dtype=bool)
    picks, by = [], []
    for turn in range(min(limit, scores.shape[0])):
        column = order[turn % len(order)]
        row = int(np.argmax(np.where(taken, -np.inf, scores[:, column])))
        taken[row] = True
        picks.append(row)
        by.append(column)
    return picks, by


def _best_rows(column: np.ndarray, depth: int) -> np.ndarray:
    """The rows of ``column`` at or above its depth-th largest value (every row tied at the cut
    kept), sorted by value descending, ties by row: a prefix of the column's full stable order."""
    if depth < len(column):
        cut = -np.partition(-column, depth - 1)[depth - 1]
        rows = np.flatnonzero(column >= cut)
    else:
        rows = np.arange(len(column))
    return rows[np.argsort(-column[rows], kind="stable")]


def round_robin_fast(scores: np.ndarray, tasks: list[str], limit: int) -> tuple[list[int], list[int]]:
    """The same picks with a pointer per column into its best rows (value descending, ties by
    row), skipping rows taken since its last turn. Fewer than ``limit`` rows are ever taken before
    a turn, so a column's best ``limit`` rows always hold an untaken one: only those are sorted."""
    order = turn_order(tasks)
    limit = min(limit, scores.shape[0])
    taken = np.zeros(scores.shape[0], dtype=bool)
    sorted_rows: dict[int, np.ndarray] = {}
    pointer: dict[int, int] = {}
    picks, by = [], []
    for turn in range(limit):
        column = order[turn % len(order)]
        if column not in sorted_rows:
            sorted_rows[column] = _best_rows(scores[:, column], limit)
            pointer[column] = 0
        rows, p = sorted_rows[column], pointer[column]
        while taken[rows[p]]:
            p += 1
        row = int(rows[p])
        pointer[column] = p + 1
        taken[row] = True
        picks.append(row)
        by.append(column)
    return picks, by


def round_robin_ranking(scores: np.ndarray, ids: list[str], columns: list[dict], options: dict, limit: int) -> Ranking:
    """The validation examples take turns (``round_robin_fast``), each taking its most similar untaken row.

    ``scores``: S (N pool rows x V validation columns, similarities); ``ids``: each row's pool
    id; ``columns``: each column's {"id", "task", "subtask"}; ``options``: the selection options;
    ``limit``: how many examples to rank (a count). Returns the Ranking (scores: the similarity to the
    column that picked it) with the picks per task."""
    tasks = [str(c.get("task")) for c in columns]
    picks, by = round_robin_fast(scores, tasks, limit)
    return Ranking([ids[i] for i in picks], [float(scores[i, j]) for i, j in zip(picks, by)],
                   {"picked_for_task": dict(sorted(Counter(tasks[j] for j in by).items()))})
