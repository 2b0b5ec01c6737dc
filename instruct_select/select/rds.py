"""RDS (representation-based data selection): cosine similarity of last-token final hidden states.

Each pool and validation example is represented by the warmed model's final-layer hidden state at
its last token; a pool example scores the maximum cosine over the validation set; top B.
"""
from __future__ import annotations

import numpy as np

from ..errors import ArtifactMismatchError
from .base import BaseSelector, Ranking, SelectionContext
from .less import top_rows


class RdsSelector(BaseSelector):
    """``rds``: pool examples by their max cosine to any validation example, over the warmed
    model's last-token final hidden states (``hidden_states``)."""

    name = "rds"
    needs = ("hidden_states",)
    description = "max cosine between last-token hidden states of pool and validation examples, top B"

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """The ``limit`` (a count) pool ids with the highest max cosine; scores: that cosine."""
        states = selection.need("hidden_states")  # {"pool": (ids, array), "validation": (ids, array)}
        ids, pool = states["pool"]
        _, val = states["validation"]
        if set(ids) != {e.id for e in selection.pool}:
            raise ArtifactMismatchError("hidden states were computed for another pool; recompute them")
        pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
        val = val / np.maximum(np.linalg.norm(val, axis=1, keepdims=True), 1e-12)
        return top_rows((pool @ val.T).max(axis=1), list(ids), limit)
