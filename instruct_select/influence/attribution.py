"""The attribution matrix A = Σ_e w_e · cos(Γ_i(θ_e), g_j(θ_e)), computed blockwise from disk.

Features are L2-normalised when stored, so the cosine is a dot product. Validation features
(|V| × k per checkpoint) are small and held in memory; training features are streamed in row
blocks, so memory stays flat in the pool size apart from the (N × |V|) result itself, which is a
memory-mapped float32 array. w_e = η̄_e / Σ η̄ from the warmup epochs' mean learning rates.

Output folder: ``scores.npy`` (N × |V|), ``rows.json`` (training ids), ``columns.json``
(validation ids with their task and subtask), and the stage manifest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import allocate_npy, atomic_write_json, read_json
from ..distributed import Shard, barrier, is_main, process_shard
from ..errors import ArtifactMismatchError
from ..features.store import FeatureStore
from ..logs import progress_bar


def checkpoint_weights(mean_lrs: list[float]) -> list[float]:
    """w_e = η̄_e / Σ η̄ (LESS's learning-rate weighting of checkpoints)."""
    total = float(sum(mean_lrs))
    if total <= 0:
        raise ArtifactMismatchError("warmup checkpoints record no positive learning rate")
    return [lr / total for lr in mean_lrs]


def _check_pair(train: FeatureStore, val: FeatureStore) -> None:
    for key in ("model", "checkpoint", "projection_seed", "projection", "dim"):
        if train.meta.get(key) != val.meta.get(key):
            raise ArtifactMismatchError(
                f"training features {train.path} and validation features {val.path} differ in {key} "
                f"({train.meta.get(key)!r} vs {val.meta.get(key)!r}); extract both from the same checkpoint "
                "and projection"
            )
    if not (train.complete() and val.complete()):
        raise ArtifactMismatchError(f"features in {train.path} or {val.path} are unfinished; rerun extraction")


# Measured (benchmarks/results/scoring_speed.txt): 16,384 and 4,096 rows are equally fast, 2,048 slower;
# 16,384 keeps the blocks, and so every score, bit-identical to earlier runs' (BLAS sums a one-row
# block in another order), at about 0.5 GiB of buffers for k = 8,192.
BLOCK_ROWS = 16384


def attribution_into(out: np.ndarray, train_stores: list[FeatureStore], val_stores: list[FeatureStore],
                     weights: list[float], block_rows: int = BLOCK_ROWS, shard: Shard | None = None) -> None:
    """Fill ``out`` (N × |V|) with Σ_e w_e · train_e @ val_eᵀ, reading ``block_rows`` rows at a time.

    With ``shard`` (i of N), only every N-th row block is computed: processes sharing one output
    file fill it together. Each block is read into reused float32 buffers (``FeatureStore.read_into``)
    and multiplied in float32 by numpy, as the plain in-memory product does; a row's score does not
    depend on the block it is in, so the matrix equals that product exactly (tested).
    """
    if not (len(train_stores) == len(val_stores) == len(weights)):
        raise ArtifactMismatchError("need one training store, one validation store and one weight per checkpoint")
    n = len(train_stores[0].ids)
    for t in train_stores:
        if t.ids != train_stores[0].ids:
            raise ArtifactMismatchError(f"{t.path} holds other training ids than {train_stores[0].path}")
    for t, v in zip(train_stores, val_stores):
        _check_pair(t, v)
    vals = [v.block(0, len(v.ids)) for v in val_stores]
    starts = (shard or Shard()).take(list(range(0, n, block_rows)))
    rows = np.empty((min(n, block_rows), train_stores[0].dim), dtype=np.float32)
    product = np.empty((len(rows), vals[0].shape[0]), dtype=np.float32)
    for start in progress_bar(starts, desc="scores"):
        stop = min(n, start + block_rows)
        scores = out[start:stop]
        for e, (t, v, w) in enumerate(zip(train_stores, vals, weights)):
            block = np.matmul(t.read_into(start, stop, rows), v.T, out=product[: stop - start])
            if e == 0:
                np.multiply(block, np.float32(w), out=scores)  # the sum's first term: 0 + w·P is w·P
            else:
                scores += np.float32(w) * block


def write_attribution(out_dir: Path, train_stores: list[FeatureStore], val_stores: list[FeatureStore],
                      weights: list[float], columns: list[dict]) -> dict:
    """Compute A into ``out_dir/scores.npy`` with its row and column labels.

    Every process of a torch.distributed run fills its share of row blocks of one partial file;
    the main process then renames it into place, so no reader ever sees a half-written matrix.
    """
    n, m = len(train_stores[0].ids), len(val_stores[0].ids)
    partial = out_dir / "scores.npy.partial"
    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        allocate_npy(partial, np.float32, (n, m))
    barrier()
    scores = np.load(partial, mmap_mode="r+")
    attribution_into(scores, train_stores, val_stores, weights, shard=process_shard())
    scores.flush()
    del scores
    barrier()
    # A training example with no response token has an all-zero feature: leave it out of selection.
    zero_rows = [train_stores[0].ids[i] for i in _zero_rows(train_stores[0])]
    if is_main():
        os.replace(partial, out_dir / "scores.npy")
        atomic_write_json(out_dir / "rows.json", train_stores[0].ids)
        atomic_write_json(out_dir / "columns.json", columns)
        atomic_write_json(out_dir / "excluded_rows.json", zero_rows)
    barrier()
    return {"rows": n, "columns": m, "weights": weights, "excluded_rows": len(zero_rows)}


def _zero_rows(store: FeatureStore, block_rows: int = 16384) -> list[int]:
    found = []
    for start in range(0, len(store.ids), block_rows):
        # In the stored dtype: a float32 copy of 64K rows was the largest allocation of scoring.
        block = store.features[start:min(len(store.ids), start + block_rows)]
        found.extend((np.flatnonzero(~np.any(block, axis=1)) + start).tolist())
    return found


@dataclass
class AttributionMatrix:
    """A loaded score matrix: values (memory-mapped), row ids, column labels."""

    scores: np.ndarray
    rows: list[str]
    columns: list[dict]
    excluded: list[str]

    @classmethod
    def load(cls, folder: str | Path) -> "AttributionMatrix":
        folder = Path(folder)
        if not (folder / "scores.npy").is_file():
            raise ArtifactMismatchError(f"{folder} holds no attribution matrix (scores.npy); run scoring first")
        excluded = read_json(folder / "excluded_rows.json") if (folder / "excluded_rows.json").is_file() else []
        return cls(np.load(folder / "scores.npy", mmap_mode="r"), read_json(folder / "rows.json"),
                   read_json(folder / "columns.json"), excluded)

    @property
    def tasks(self) -> list[str]:
        return [c["task"] for c in self.columns]
