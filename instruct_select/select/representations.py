"""The representation axis: how a pool example is scored against each validation example.

Each representation turns its artifact into one similarity matrix S (N pool rows x V validation
columns, float32) with the columns' validation id and target task; every grid selector
(``select/grid.py``) reads only S, so any selector runs over any representation.

| name  | artifact (need)        | S_ij                                                               |
|-------|------------------------|--------------------------------------------------------------------|
| less  | attribution            | LESS's influence: the learning-rate-weighted cosine of Adam pool    |
|       |                        | gradients and SGD validation gradients over the warmup checkpoints |
| rds+  | representations        | cosine of position-weighted mean base-model final hidden states    |
| embed | encoder_embeddings     | cosine of mean-pooled final states of a local encoder folder       |
|       |                        | (``embed_encoder``; none given: refused, never substituted)        |

Rows the attribution matrix excludes (no response token) are left out, as ``less`` and ``bids`` do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ArtifactMismatchError
from .base import SelectionContext
from .less import pool_matrix
from .rds_plus import BLOCK, unit_rows


@dataclass
class Similarity:
    """S (N x V float32), its rows' pool ids and its columns ({"id", "task", "subtask"})."""

    scores: np.ndarray
    ids: list[str]
    columns: list[dict]


def cosine_matrix(pool: np.ndarray, validation: np.ndarray) -> np.ndarray:
    """(N, V) cosines, a block of pool rows at a time (the same products ``rds_plus`` takes)."""
    pool, validation = unit_rows(pool), unit_rows(validation)
    out = np.empty((len(pool), len(validation)), dtype=np.float32)
    for start in range(0, len(pool), BLOCK):
        out[start:start + BLOCK] = pool[start:start + BLOCK] @ validation.T
    return out


def _attribution_similarity(selection: SelectionContext, need: str) -> Similarity:
    return Similarity(*pool_matrix(selection))


def _vector_similarity(selection: SelectionContext, need: str) -> Similarity:
    """Cosines of pooled vectors (``features.representations.Representations``)."""
    vectors = selection.need(need)
    if set(vectors.pool_ids) != {e.id for e in selection.pool}:
        raise ArtifactMismatchError(f"the {need} were computed for another pool; recompute them")
    columns = [{"id": i, "task": t, "subtask": None} for i, t in zip(vectors.validation_ids, vectors.validation_tasks)]
    return Similarity(cosine_matrix(vectors.pool, vectors.validation), list(vectors.pool_ids), columns)


@dataclass(frozen=True)
class Representation:
    """One representation of the grid: its ``name`` in method names, the ``need`` whose artifact
    it reads, a ``description``, how that artifact becomes S (``build``) and ``encoder``, the
    run setting naming the local encoder folder it loads ("" for none)."""

    name: str
    need: str
    description: str
    build: Callable[[SelectionContext, str], Similarity]
    encoder: str = ""

    def similarity(self, selection: SelectionContext) -> Similarity:
        """S for ``selection``'s pool from this representation's artifact."""
        return self.build(selection, self.need)


REPRESENTATION_AXIS = {
    "less": Representation("less", "attribution", "LESS gradient features (the attribution matrix)",
                           _attribution_similarity),
    "rds+": Representation("rds+", "representations", "RDS+ position-weighted mean base-model hidden states, cosine",
                           _vector_similarity),
    "embed": Representation("embed", "encoder_embeddings",
                            "mean-pooled states of a local encoder (embed_encoder), cosine", _vector_similarity,
                            encoder="embed_encoder"),
}
