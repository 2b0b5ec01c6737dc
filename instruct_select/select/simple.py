"""Selectors that need no model: random (seeded, without replacement) and full (the whole pool)."""
from __future__ import annotations

import random

from .base import Ranking, SelectionContext


class RandomSelector:
    name = "random"
    needs: tuple[str, ...] = ()
    description = "uniform sample without replacement, seeded"

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        ids = sorted(e.id for e in selection.pool)  # sorted: independent of the pool's order
        random.Random(selection.seed).shuffle(ids)
        return Ranking(ids[:limit])


class FullSelector:
    name = "full"
    needs: tuple[str, ...] = ()
    description = "the whole pool (the budget is ignored)"
    ignores_budget = True

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        return Ranking(sorted(e.id for e in selection.pool))
