"""Doubly greedy (the selector of "A Critical Look at Targeted Instruction Selection", Harvard-DCML
2026, arXiv 2602.14696; dcml-lab/targeted-instruction-selection, ``selection/doubly_greedy.py``).

Greedy twice: each pool example is matched to its most similar validation example (the max over
the columns of S), and the pool is taken in descending order of that similarity (ties: the lower
pool row). On the attribution matrix this is the BIDS paper's ``instance-max`` baseline; on
last-token states of a warmed model it is ``rds``.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .base import Ranking
from .less import top_rows


def doubly_greedy_ranking(scores: np.ndarray, ids: list[str], columns: list[dict], options: dict,
                          limit: int) -> Ranking:
    """Doubly greedy: each pool row's max similarity over the validation columns, top ``limit``.

    ``scores``: S (N pool rows x V validation columns, similarities); ``ids``: each row's pool
    id; ``columns``: each column's {"id", "task", "subtask"}; ``options``: the selection options;
    ``limit``: how many examples to rank (a count). Returns the Ranking (scores: that max) with the
    nearest validation task of each pick."""
    ranking = top_rows(scores.max(axis=1), ids, limit)
    row_of = {id_: i for i, id_ in enumerate(ids)}
    nearest = [str(columns[int(np.argmax(scores[row_of[id_]]))].get("task")) for id_ in ranking.ids]
    ranking.diagnostics["nearest_task"] = dict(sorted(Counter(nearest).items()))
    return ranking
