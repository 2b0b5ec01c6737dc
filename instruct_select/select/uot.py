"""Unbalanced optimal transport (UOT), the selector of "A Critical Look at Targeted Instruction
Selection" (Harvard-DCML 2026, arXiv 2602.14696; dcml-lab/targeted-instruction-selection,
``selection/uot.py``), solved with POT (Python Optimal Transport, ``pip install pot``).

The validation examples are the sources, each with mass 1/V; the pool examples the targets, each
with reference mass 1/N. The cost of moving mass from validation example j to pool example i is
C_ji = (1 − S_ij) / 2 with S clipped to [−1, 1] (cosines, and LESS's convex mix of cosines, lie
there). The plan T minimises

    <T, C> + ε·KL(T | a bᵀ) + ρ₁·KL(T 1 | a) + ρ₂·KL(Tᵀ 1 | b)

with the study's ε = 0.01, ρ₁ = ∞ (every validation example ships all its mass) and ρ₂ = 1e−4 (the
pool's marginal is nearly free, so mass flows to the pool examples nearest the validation set
rather than spreading over the pool). A pool example's score is the mass it receives, Σ_j T_ji;
the pool is taken in descending order of it (ties: the lower pool row). ``selection_options``
``uot_epsilon``, ``uot_reg_m`` ([ρ₁, ρ₂]; null for ∞), ``uot_max_iter`` and ``uot_tolerance``
change the solver's settings.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import ConfigError
from .base import Ranking
from .less import top_rows

EPSILON = 0.01
REG_M = (float("inf"), 1e-4)
MAX_ITER = 1000
TOLERANCE = 1e-6


def _solver():
    try:
        from ot.unbalanced import sinkhorn_unbalanced
    except ImportError:
        raise ConfigError("the uot selector needs POT (Python Optimal Transport), which is not installed: "
                          "pip install pot (or pip install 'instruct_select[ot]'); it pulls no torch") from None
    return sinkhorn_unbalanced


def _settings(options: dict) -> tuple[float, tuple[float, float], int, float]:
    epsilon = float(options.get("uot_epsilon", EPSILON))
    reg_m = options.get("uot_reg_m", REG_M)
    if not isinstance(reg_m, (list, tuple)) or len(reg_m) != 2:
        raise ConfigError(f"selection_options uot_reg_m must be two numbers [rho1, rho2] (null for infinity), got {reg_m!r}")
    reg_m = tuple(float("inf") if r is None else float(r) for r in reg_m)
    if epsilon <= 0 or min(reg_m) <= 0:
        raise ConfigError(f"uot_epsilon and uot_reg_m must be > 0, got {epsilon} and {list(reg_m)}")
    return epsilon, reg_m, int(options.get("uot_max_iter", MAX_ITER)), float(options.get("uot_tolerance", TOLERANCE))


def uot_mass(scores: np.ndarray, options: dict | None = None) -> tuple[np.ndarray, dict]:
    """The mass each pool row (of S, N x V) receives in the unbalanced plan, and the solver's log."""
    epsilon, reg_m, max_iter, tolerance = _settings(options or {})
    n, v = scores.shape
    cost = (1.0 - np.clip(scores.T.astype(np.float64), -1.0, 1.0)) / 2.0  # (V, N): validation -> pool
    plan, log = _solver()(np.full(v, 1.0 / v), np.full(n, 1.0 / n), cost, reg=epsilon, reg_m=reg_m,
                          reg_type="kl", numItermax=max_iter, stopThr=tolerance, log=True)
    mass = plan.sum(axis=0)
    if not np.all(np.isfinite(mass)):
        raise ConfigError(f"the UOT solver diverged (epsilon {epsilon}); raise selection_options uot_epsilon")
    info = {"epsilon": epsilon, "reg_m": [None if np.isinf(r) else r for r in reg_m],
            "last_error": float(log["err"][-1]) if log.get("err") else None,  # POT records it every 10 iterations
            "transported_mass": float(mass.sum())}
    return mass, info


def uot_ranking(scores: np.ndarray, ids: list[str], columns: list[dict], options: dict, limit: int) -> Ranking:
    """Pool rows by the mass they receive in the unbalanced transport plan (``uot_mass``), top ``limit``.

    ``scores``: S (N pool rows x V validation columns, similarities); ``ids``: each row's pool
    id; ``columns``: each column's {"id", "task", "subtask"}; ``options``: the selection options;
    ``limit``: how many examples to rank (a count). Returns the Ranking (scores: the mass) with the
    solver's report and the nearest validation task of each pick."""
    mass, info = uot_mass(scores, options)
    ranking = top_rows(mass, ids, limit)
    row_of = {id_: i for i, id_ in enumerate(ids)}
    nearest = [str(columns[int(np.argmax(scores[row_of[id_]]))].get("task")) for id_ in ranking.ids]
    ranking.diagnostics.update(uot=info, nearest_task=dict(sorted(Counter(nearest).items())))
    return ranking
