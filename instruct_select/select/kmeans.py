"""A compact, seeded k-means (k-means++ initialisation, Lloyd iterations) in numpy.

Learning-percentage selection clusters the pool before taking the hardest share of each cluster.
This needs no more than plain k-means, and a dependency-free version keeps the result a function
of (rows, k, seed) only: the same inputs and seed give the same labels on every run.

Determinism details: every random draw comes from ``numpy.random.default_rng(seed)``; ties in
the nearest-centre search go to the lower centre index (``argmin``); an emptied cluster is
re-seeded at the row farthest from its centre (the lowest such row on ties). Distances are
computed in row blocks so a 52K × 1000 problem never holds the full distance matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

BLOCK_ROWS = 4096


@dataclass
class KMeansResult:
    """A clustering: each row's label, the centres, the inertia and the Lloyd iterations run."""
    labels: np.ndarray  # (N,) int64 cluster of each row
    centers: np.ndarray  # (k, d) float64
    inertia: float  # sum of squared distances to the assigned centre
    iterations: int  # Lloyd iterations run

    def sizes(self) -> np.ndarray:
        """The number of rows in each cluster, (k,) int64 (0 for an empty cluster)."""
        return np.bincount(self.labels, minlength=len(self.centers))


def _nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, squared distances) of every row to its nearest centre, a block of rows at a time."""
    center_sq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), BLOCK_ROWS):
        block = x[start:start + BLOCK_ROWS]
        d2 = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ centers.T + center_sq[None, :]
        labels[start:start + len(block)] = np.argmin(d2, axis=1)
        dist[start:start + len(block)] = np.maximum(d2[np.arange(len(block)), labels[start:start + len(block)]], 0.0)
    return labels, dist


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new centre drawn with probability proportional to D(x)²."""
    n = len(x)
    chosen = [int(rng.integers(n))]
    closest = np.einsum("ij,ij->i", x - x[chosen[0]], x - x[chosen[0]])
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            # Fewer distinct rows than k: every row already sits on a centre; take unused rows.
            unused = np.setdiff1d(np.arange(n), chosen)
            chosen.append(int(rng.choice(unused)))
        else:
            chosen.append(int(rng.choice(n, p=closest / total)))
        diff = x - x[chosen[-1]]
        closest = np.minimum(closest, np.einsum("ij,ij->i", diff, diff))
    return x[chosen].copy()


def _update_centers(x: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Mean of each cluster's rows; clusters left empty keep their old centre and are returned."""
    k = len(centers)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros_like(centers)
    order = np.argsort(labels, kind="stable")
    present = np.flatnonzero(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
    sums[present] = np.add.reduceat(x[order], starts, axis=0)
    new = centers.copy()
    new[present] = sums[present] / counts[present, None]
    return new, np.flatnonzero(counts == 0).tolist()


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-10) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups; stops when no label changes or after ``max_iter``.

    ``tol`` also stops early when the inertia improves by less than ``tol`` relative to it.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"k-means needs a non-empty (rows, dims) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("k-means input holds NaN or inf rows; recompute the embeddings")
    if not 1 <= k <= len(x):
        raise ConfigError(f"k-means: the number of clusters must be between 1 and the rows ({len(x)}), got {k}")
    rng = np.random.default_rng(seed)
    centers = kmeans_plus_plus(x, k, rng)
    labels, dist = _nearest(x, centers)
    inertia = float(dist.sum())
    iterations = 0
    for iterations in range(1, max_iter + 1):
        centers, empty = _update_centers(x, labels, centers)
        for c in empty:  # re-seed an empty cluster at the worst-served row
            far = int(np.argmax(dist))
            if dist[far] <= 0:
                break
            centers[c] = x[far]
            dist[far] = 0.0
        new_labels, dist = _nearest(x, centers)
        new_inertia = float(dist.sum())
        converged = np.array_equal(new_labels, labels) or inertia - new_inertia <= tol * max(inertia, 1e-300)
        labels, inertia = new_labels, new_inertia
        if converged:
            break
    return KMeansResult(labels, centers, inertia, iterations)
