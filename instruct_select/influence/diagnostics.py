"""The BIDS paper's diagnostics of a selection S, from the attribution matrix A (N × |V|).

Both are computed on the raw scores A and on the column-standardised ones Â_ij = (A_ij − μ_j) / σ_j,
at the level of validation tasks and of single validation instances (columns):

AID (average influence): the mean row of S.
  - ``aid_instance[j]`` = mean over i ∈ S of A_ij, for every validation instance j (keyed by its id);
  - ``aid[k]``          = mean of ``aid_instance`` over task k's instances (= mean of A over S × V_k).
THI (highest influence): where each selected example's influence peaks, counted.
  - ``thi[k]``          = how many i ∈ S have the task k maximising Σ_{j∈V_k} A_ij (the paper's
                          rule) when every task has as many validation instances; with unequal
                          task sizes, the task maximising the mean (1/|V_k|) Σ_{j∈V_k} A_ij (ours):
                          a sum grows with the number of instances, so a task with more of them
                          would collect the peaks whatever the influences. ``thi_rule`` says which;
  - ``thi_instance[j]`` = how many i ∈ S have the instance j maximising A_ij;
  - ``thi_instance_by_task[k]`` = ``thi_instance`` summed over task k's instances (a count of
                          instances, not normalised: a task with more instances has more chances).
Ties go to the lower index (tasks in sorted name order, instances in column order).

μ_j and σ_j (population std) are taken over the matrix's scorable rows only: rows in ``excluded``
(no response token, hence an all-zero feature) are left out of the statistics, as the selectors
leave them out of selection, so a diagnostic of BIDS's selection standardises exactly the rows BIDS
standardised. A column whose σ is zero (within 1e-12 of its mean's scale, BIDS's rule) is centred
only (σ taken as 1) and listed under ``zero_variance_columns``. Selected ids that are excluded or not
rows of the matrix carry no influence and are left out of AID and THI, counted under ``left_out``.

The matrix is read a row block at a time (it may be memory-mapped) and only the selected rows are
standardised, so memory stays at one block plus the selection.
"""
from __future__ import annotations

import numpy as np

from .attribution import AttributionMatrix

BLOCK_ROWS = 16384


def column_statistics(scores: np.ndarray, keep: np.ndarray,
                      block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and population std of every column over the rows where ``keep`` is true (two passes)."""
    def kept_blocks():
        for start in range(0, scores.shape[0], block_rows):
            yield np.asarray(scores[start:start + block_rows], dtype=np.float64)[keep[start:start + block_rows]]

    n = max(int(keep.sum()), 1)
    mean = sum((block.sum(axis=0) for block in kept_blocks()), np.zeros(scores.shape[1])) / n
    squares = sum((np.einsum("ij,ij->j", block - mean, block - mean) for block in kept_blocks()),
                  np.zeros(scores.shape[1]))
    return mean, np.sqrt(squares / n)


def _column_keys(columns: list[dict]) -> list[str]:
    keys = [str(c.get("id", j)) for j, c in enumerate(columns)]
    if len(set(keys)) != len(keys):  # ids repeated across tasks: make them unique with the task
        keys = [f"{c.get('task')}/{k}" for c, k in zip(columns, keys)]
    if len(set(keys)) != len(keys):
        keys = [f"{j}:{k}" for j, k in enumerate(keys)]
    return keys


def _one_kind(chosen: np.ndarray, tasks: list[str], task_cols: list[np.ndarray], keys: list[str],
              task_of_col: np.ndarray) -> dict:
    """AID and THI of the selected rows ``chosen`` (S × |V|) of one kind of score."""
    n_cols = chosen.shape[1]
    if len(chosen):
        per_instance = chosen.mean(axis=0)
        sums = np.stack([chosen[:, c].sum(axis=1) for c in task_cols], axis=1)
        sizes = np.array([len(c) for c in task_cols])
        if len(set(sizes.tolist())) > 1:  # unequal task sizes: compare means (equal ones: the sums, exactly)
            sums = sums / sizes
        task_hits = np.bincount(sums.argmax(axis=1), minlength=len(tasks))  # argmax: the lowest index on ties
        instance_hits = np.bincount(chosen.argmax(axis=1), minlength=n_cols)
    else:
        per_instance = np.zeros(n_cols)
        task_hits, instance_hits = np.zeros(len(tasks), dtype=np.int64), np.zeros(n_cols, dtype=np.int64)
    by_task = np.bincount(task_of_col, weights=instance_hits, minlength=len(tasks))
    return {
        "aid": {t: float(per_instance[c].mean()) for t, c in zip(tasks, task_cols)},
        "thi": {t: int(h) for t, h in zip(tasks, task_hits)},
        "aid_instance": {k: float(v) for k, v in zip(keys, per_instance)},
        "thi_instance": {k: int(h) for k, h in zip(keys, instance_hits)},
        "thi_instance_by_task": {t: int(h) for t, h in zip(tasks, by_task)},
    }


def influence_diagnostics(matrix: AttributionMatrix, selected_ids: list[str]) -> dict:
    """AID and THI of ``selected_ids`` (raw and normalised, task and instance level); module docstring."""
    scores = matrix.scores
    excluded = set(matrix.excluded)
    keep = np.array([id_ not in excluded for id_ in matrix.rows], dtype=bool)
    row_of = {id_: i for i, id_ in enumerate(matrix.rows)}
    wanted = set(selected_ids)
    rows = np.array(sorted(row_of[i] for i in wanted if i in row_of and i not in excluded), dtype=np.int64)
    tasks = sorted({str(t) for t in matrix.tasks})
    task_index = {t: k for k, t in enumerate(tasks)}
    task_of_col = np.array([task_index[str(t)] for t in matrix.tasks], dtype=np.int64)
    task_cols = [np.flatnonzero(task_of_col == k) for k in range(len(tasks))]
    keys = _column_keys(matrix.columns)

    mean, std = column_statistics(scores, keep)
    flat = std <= 1e-12 * np.maximum(1.0, np.abs(mean))  # BIDS's zero-variance rule
    chosen = np.asarray(scores[rows], dtype=np.float64) if len(rows) else np.zeros((0, len(keys)))
    normalised = (chosen - mean) / np.where(flat, 1.0, std)
    return {
        "raw": _one_kind(chosen, tasks, task_cols, keys, task_of_col),
        "normalised": _one_kind(normalised, tasks, task_cols, keys, task_of_col),
        "instance_task": dict(zip(keys, (tasks[k] for k in task_of_col))),
        "rows": int(len(rows)),
        "left_out": {"no_response_token": len(wanted & excluded),
                     "not_in_matrix": len([i for i in wanted if i not in row_of])},
        "statistics_rows": int(keep.sum()),
        "thi_rule": "sum" if len({len(c) for c in task_cols}) <= 1 else "mean (unequal task sizes)",
        "zero_variance_columns": [keys[j] for j in np.flatnonzero(flat)],
    }
