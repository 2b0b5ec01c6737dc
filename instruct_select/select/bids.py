"""BIDS: balanced and influential data selection (Dai et al. 2025, Algorithm 1), exact and fast.

1. Instance-level normalisation: Â_ij = (A_ij − μ_j) / σ_j over all N rows (zero-variance
   columns are reported and dropped).
2. Iterative selection: with μ^T the mean of the selected rows of Â (zero while none is selected),
   repeatedly pick argmax_{i ∉ T} max_j (Â_ij − μ^T_j); ties go to the lowest row index.

``bids_naive`` is that loop, O(B·N·|V|). ``bids_fast`` gives the same picks in
O(N·|V| + B·|V|·log B): the maximum over (i, j) is reached at some column's best remaining row, so
each column keeps a pointer into its rows sorted by value (descending, ties by row index); a step
takes the column with the largest Â[top_j, j] − μ^T_j (ties: the lowest row among the tied
columns' tops, which is the naive loop's lowest-index rule) and advances the pointers that now
point at a selected row. A pointer never passes more than B selected rows, so each column needs
only its top B+1 rows sorted (found by partition, with every row tied at the cut kept).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import InputError
from .base import BaseSelector, Ranking, SelectionContext
from .less import INFLUENCE_NEEDS, column_statistics, pool_matrix


def bids_naive(normalised: np.ndarray, budget: int) -> list[int]:
    """Algorithm 1 as written on ``normalised`` (Â, N x V), picking ``budget`` rows (a count): the
    reference the fast form is tested against. Returns the picked rows in pick order."""
    n, m = normalised.shape
    selected: list[int] = []
    taken = np.zeros(n, dtype=bool)
    total = np.zeros(m, dtype=np.float64)
    mean = np.zeros(m, dtype=np.float32)
    for _ in range(min(budget, n)):
        gain = (normalised - mean).max(axis=1)
        gain[taken] = -np.inf
        best = int(np.argmax(gain))  # argmax returns the first maximum: the lowest row index
        selected.append(best)
        taken[best] = True
        total += normalised[best]
        mean = (total / len(selected)).astype(np.float32)
    return selected


def _normalise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(values − μ) / σ in float32: elementwise IEEE operations, so any subset of the matrix
    normalised on its own gives the same bits as normalising the whole matrix."""
    out = np.array(values, dtype=np.float32, copy=True)
    out -= mean
    out /= std
    return out


def _column_candidates(scores: np.ndarray, mean: np.ndarray, std: np.ndarray, depth: int):
    """Per column, its rows whose normalised value is >= the depth-th largest, sorted by (value
    desc, row asc), as (L+1, m) arrays of rows (-1 past the end) and normalised values."""
    n, m = scores.shape
    per_column = []
    chunk = 32  # a few columns at a time: no full-size normalised copy is ever made
    for start in range(0, m, chunk):
        stop = min(m, start + chunk)
        block = _normalise(scores[:, start:stop].T, mean[start:stop, None], std[start:stop, None])
        for col in block:
            cut = -np.partition(-col, depth - 1)[depth - 1] if depth < n else -np.inf
            rows = np.flatnonzero(col >= cut)  # ascending row order; ties at the cut all kept
            order = np.argsort(-col[rows], kind="stable")  # stable: equal values keep ascending rows
            per_column.append((rows[order].astype(np.int32), col[rows[order]]))
    length = max(len(r) for r, _ in per_column)
    rows_arr = np.full((length + 1, m), -1, dtype=np.int32)
    vals_arr = np.full((length + 1, m), -np.inf, dtype=np.float32)
    for j, (rows, values) in enumerate(per_column):
        rows_arr[: len(rows), j] = rows
        vals_arr[: len(rows), j] = values
    return rows_arr, vals_arr


def bids_fast(scores: np.ndarray, budget: int, mean: np.ndarray | None = None,
              std: np.ndarray | None = None) -> list[int]:
    """The pointer form of Algorithm 1 on Â = (scores − mean) / std (identity when not given).

    Selects exactly what ``bids_naive`` selects on Â, without materialising Â: candidate columns
    and selected rows are normalised on demand, bit-identically. ``scores``: A (N x V);
    ``budget``: rows to pick (a count); ``mean``, ``std``: (V,) per column. Returns the picked rows
    in pick order.
    """
    n, m = scores.shape
    budget = min(budget, n)
    mean = np.zeros(m, dtype=np.float32) if mean is None else mean.astype(np.float32)
    std = np.ones(m, dtype=np.float32) if std is None else std.astype(np.float32)
    rows, vals = _column_candidates(scores, mean, std, budget + 1)
    pointer = np.zeros(m, dtype=np.int64)
    columns = np.arange(m)
    taken = np.zeros(n, dtype=bool)
    total = np.zeros(m, dtype=np.float64)
    selected_mean = np.zeros(m, dtype=np.float32)
    selected: list[int] = []
    for _ in range(budget):
        top_rows = rows[pointer, columns]
        gain = vals[pointer, columns] - selected_mean
        best_gain = gain.max()
        best = n
        for j in np.flatnonzero(gain == best_gain):
            # Rows below the top whose difference rounds to the same gain are tied too.
            p = pointer[j]
            while rows[p, j] >= 0 and (taken[rows[p, j]] or vals[p, j] - selected_mean[j] == best_gain):
                if not taken[rows[p, j]]:
                    best = min(best, int(rows[p, j]))
                p += 1
        selected.append(best)
        taken[best] = True
        total += _normalise(scores[best], mean, std)
        selected_mean = (total / len(selected)).astype(np.float32)
        for j in np.flatnonzero(top_rows == best):
            p = pointer[j]
            while rows[p, j] >= 0 and taken[rows[p, j]]:
                p += 1
            pointer[j] = p
    return selected


class BidsSelector(BaseSelector):
    """``bids`` (Dai et al. 2025): the attribution matrix's columns standardised over the pool,
    then iteratively the row that most raises the least-represented column (module docstring)."""

    name = "bids"
    needs = INFLUENCE_NEEDS
    description = "BIDS: instance-normalised influence, iteratively favouring the least represented instance"

    @staticmethod
    def check_validation(tasks: list, options: dict) -> None:
        """Refuse unequal validation sizes per task (``tasks``: each validation example's task):
        the pipeline calls this before any compute, ``rank`` again on the score matrix's columns."""
        sizes = Counter(str(task) for task in tasks)
        if len(set(sizes.values())) > 1 and not options.get("allow_unequal_validation"):
            raise InputError(
                f"BIDS needs an equal number of validation examples per task, got {dict(sorted(sizes.items()))}; "
                "sample the validation sets to equal sizes (or set selection_options: {allow_unequal_validation: "
                "true} in the run config)"
            )

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """Pool ids in BIDS's pick order, ``limit`` (a count) of them; scores: each pick's best
        normalised influence. Refuses unequal validation sizes per task (``check_validation``)."""
        return bids_ranking(*pool_matrix(selection), selection.options, limit)


def bids_ranking(scores: np.ndarray, ids: list[str], columns: list[dict], options: dict, limit: int) -> Ranking:
    """BIDS over any (pool x validation) matrix whose columns carry their task: the rule of
    ``bids`` on the attribution matrix, and of ``bids:REPRESENTATION`` on a similarity matrix.

    ``scores``: the matrix (N pool rows x V columns); ``ids``: each row's pool id; ``columns``: each
    column's {"id", "task", ...}; ``options``: the selection options (``allow_unequal_validation``);
    ``limit``: picks (a count). Returns the Ranking (scores: each pick's best normalised value;
    diagnostics: the zero-variance columns dropped)."""
    BidsSelector.check_validation([c.get("task") for c in columns], options)
    mean, std, keep, dropped = column_statistics(scores)
    kept = scores if not dropped else scores[:, keep]
    picks = bids_fast(kept, limit, mean[keep], std[keep])
    best = _normalise(kept[picks], mean[keep], std[keep]).max(axis=1).astype(float).tolist() if picks else []
    diagnostics = {"dropped_zero_variance_columns": [columns[j].get("id", j) for j in dropped]}
    return Ranking([ids[i] for i in picks], best, diagnostics)
