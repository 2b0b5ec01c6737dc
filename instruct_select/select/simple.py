"""Selectors that need no model: random (seeded, without replacement) and full (the whole pool)."""
from __future__ import annotations

import random

from .base import BaseSelector, Ranking, SelectionContext


class RandomSelector(BaseSelector):
    """``random``: a uniform sample of the pool without replacement, seeded by ``selection.seed``."""

    name = "random"
    needs: tuple[str, ...] = ()
    description = "uniform sample without replacement, seeded"

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        ids = sorted(e.id for e in selection.pool)  # sorted: independent of the pool's order
        random.Random(selection.seed).shuffle(ids)
        return Ranking(ids[:limit])


class FullSelector(BaseSelector):
    """``full``: the whole pool (``ignores_budget``: the budget is not applied)."""

    name = "full"
    needs: tuple[str, ...] = ()
    description = "the whole pool (the budget is ignored)"
    ignores_budget = True

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        return Ranking(sorted(e.id for e in selection.pool))
