"""KNN-Uniform (TSDS, Liu et al. 2024, "TSDS: Data Selection for Task-Specific Model Finetuning",
Algorithm 1 without its density term), as "A Critical Look at Targeted Instruction Selection"
(Harvard-DCML 2026, arXiv 2602.14696; dcml-lab/targeted-instruction-selection,
``selection/tsds_subset.py``, ``run_tsds_knn_uniform``) runs it on a similarity matrix.

Each validation example i (M of them) spreads mass 1/M uniformly over its K nearest pool examples
under the distance d = 1 − S. K is the same for every validation example: with each example's
distances sorted ascending (d_i1 ≤ d_i2 ≤ ...), the smallest K ≥ 1 with

    (α / C) · Σ_i Σ_{k ≤ K} (d_i,K+1 − d_ik)  ≥  (1 − α) · M

(TSDS's stopping rule: spreading wider costs more distance than it buys in closeness to uniform),
searched among each example's L nearest (K = L when none meets it); α = 0.01, C = 5, L = 5,000 as
the study. A pool example's score is the mass it receives; the pool is taken in descending order of
it. Ties, and the pool examples no validation example reaches (mass 0, often most of a large pool),
go by their doubly-greedy score (max similarity) and then the lower row (**ours**: the study's code
orders them by row alone, which makes the tail of a large budget arbitrary). ``selection_options``
``knn_alpha``, ``knn_c`` and ``knn_neighbours`` change α, C and L. KNN-KDE, which also divides
each neighbour's mass by its density among the pool examples, needs pool-to-pool distances the
similarity matrix does not hold, and is not here.
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from ..errors import ConfigError
from .base import Ranking

ALPHA, C, NEIGHBOURS = 0.01, 5.0, 5000
logger = logging.getLogger(__name__)


def nearest(distance: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``distance`` (N x M), its ``neighbours`` smallest rows, ascending (ties: the
    lower row), as (M, L) rows and distances."""
    n = distance.shape[0]
    rows = np.empty((distance.shape[1], neighbours), dtype=np.int64)
    for j in range(distance.shape[1]):
        column = distance[:, j]
        if neighbours < n:
            cut = np.partition(column, neighbours - 1)[neighbours - 1]
            candidates = np.flatnonzero(column <= cut)  # every row tied at the cut kept
        else:
            candidates = np.arange(n)
        rows[j] = candidates[np.argsort(column[candidates], kind="stable")][:neighbours]
    return rows, np.take_along_axis(distance.T, rows, axis=1)


def choose_k(sorted_distance: np.ndarray, alpha: float, c: float) -> int:
    """TSDS's K: the smallest K in 1..L−1 meeting the stopping rule, else L."""
    m, length = sorted_distance.shape
    if length < 2:
        return length
    d = sorted_distance.astype(np.float64)
    before = np.cumsum(d, axis=1)  # before[:, K - 1] = Σ_{k ≤ K} d_ik
    ks = np.arange(1, length)
    gaps = (ks * d[:, 1:] - before[:, :-1]).sum(axis=0)  # for K = 1..L−1: Σ_i Σ_{k≤K} (d_i,K+1 − d_ik)
    met = np.flatnonzero((alpha / c) * gaps >= (1 - alpha) * m)
    return int(ks[met[0]]) if met.size else length


def _settings(options: dict) -> tuple[float, float, int]:
    alpha = float(options.get("knn_alpha", ALPHA))
    c = float(options.get("knn_c", C))
    neighbours = int(options.get("knn_neighbours", NEIGHBOURS))
    if not (0 < alpha < 1 and c > 0 and neighbours >= 1):
        raise ConfigError(f"knn_alpha must be in (0, 1), knn_c > 0 and knn_neighbours >= 1; got {alpha}, {c}, "
                          f"{neighbours}")
    return alpha, c, neighbours


def knn_uniform_mass(scores: np.ndarray, options: dict | None = None) -> tuple[np.ndarray, int]:
    """The mass each pool row (of S, N x M) receives, and the K every validation example spread over."""
    alpha, c, neighbours = _settings(options or {})
    n, m = scores.shape
    rows, distance = nearest((1.0 - scores).astype(np.float32), min(neighbours, n))
    k = choose_k(distance, alpha, c)
    mass = np.zeros(n, dtype=np.float64)
    np.add.at(mass, rows[:, :k].ravel(), 1.0 / (k * m))
    return mass, k


def knn_uniform_ranking(scores: np.ndarray, ids: list[str], columns: list[dict], options: dict,
                        limit: int) -> Ranking:
    """KNN-Uniform: pool rows by the mass they receive (``knn_uniform_mass``), ties by max similarity.

    ``scores``: S (N pool rows x V validation columns, similarities); ``ids``: each row's pool
    id; ``columns``: each column's {"id", "task", "subtask"}; ``options``: the selection options;
    ``limit``: how many examples to rank (a count). Returns the Ranking (scores: the mass) with K and
    the nearest validation task of each pick."""
    mass, k = knn_uniform_mass(scores, options)
    if k >= len(mass) and limit < len(mass):
        # Every validation example reaches the whole pool: equal mass everywhere, so the ties decide.
        logger.warning("[select] knn-uniform: K = %d, the whole pool (TSDS's stopping rule is not met among the "
                       "nearest); every pool example receives the same mass and the selection is doubly-greedy's. "
                       "The study's setting has a pool far larger than knn_neighbours (5,000)", k)
    order = np.lexsort((np.arange(len(mass)), -scores.max(axis=1), -mass))[:limit]  # mass, then max similarity
    nearest_task = [str(columns[int(np.argmax(scores[i]))].get("task")) for i in order]
    return Ranking([ids[i] for i in order], mass[order].astype(float).tolist(),
                   {"knn": {"k": k, "pool_examples_with_mass": int((mass > 0).sum())},
                    "nearest_task": dict(sorted(Counter(nearest_task).items()))})
