"""The attribution matrix: blockwise from disk equals the dense weighted cosine sum."""
from __future__ import annotations

import numpy as np
import pytest

from instruct_select.errors import ArtifactMismatchError
from instruct_select.features.store import FeatureStore
from instruct_select.influence.attribution import (
    AttributionMatrix, attribution_into, checkpoint_weights, write_attribution,
)


def _store(path, ids, values, checkpoint, dtype="float32"):
    store = FeatureStore.open_or_create(path, ids, values.shape[1], dtype,
                                        {"model": "m", "checkpoint": checkpoint, "projection_seed": 0})
    store.write(ids, values)
    return store


def _unit(rng, n, k):
    x = rng.normal(size=(n, k)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_blockwise_equals_dense(tmp_path):
    rng = np.random.default_rng(0)
    train_ids = [f"t{i}" for i in range(37)]
    val_ids = [f"v{j}" for j in range(6)]
    lrs = [3e-3, 2e-3, 1e-3]
    weights = checkpoint_weights(lrs)
    assert weights == pytest.approx([0.5, 1 / 3, 1 / 6])
    trains, vals, dense = [], [], np.zeros((37, 6))
    for e, w in enumerate(weights):
        t, v = _unit(rng, 37, 16), _unit(rng, 6, 16)
        trains.append(_store(tmp_path / f"t{e}", train_ids, t, f"epoch-{e}"))
        vals.append(_store(tmp_path / f"v{e}", val_ids, v, f"epoch-{e}"))
        cos = (t @ v.T) / np.outer(np.linalg.norm(t, axis=1), np.linalg.norm(v, axis=1))
        dense += w * cos
    out = np.zeros((37, 6), dtype=np.float32)
    attribution_into(out, trains, vals, weights, block_rows=5)
    np.testing.assert_allclose(out, dense, rtol=1e-5, atol=1e-6)
    columns = [{"id": v, "task": "math" if j < 3 else "code", "subtask": None} for j, v in enumerate(val_ids)]
    write_attribution(tmp_path / "scores", trains, vals, weights, columns)
    loaded = AttributionMatrix.load(tmp_path / "scores")
    np.testing.assert_allclose(loaded.scores, dense, rtol=1e-5, atol=1e-6)
    assert loaded.rows == train_ids and loaded.tasks == ["math"] * 3 + ["code"] * 3


def _simple_scores(trains, vals, weights, block_rows):
    """The plain way, as scoring was written before it reused buffers: each block widened by numpy,
    multiplied, weighted and summed."""
    n = len(trains[0].ids)
    out = np.zeros((n, len(vals[0].ids)), dtype=np.float32)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        acc = np.zeros((stop - start, len(vals[0].ids)), dtype=np.float32)
        for t, v, w in zip(trains, vals, weights):
            rows, columns = np.asarray(t.features[start:stop], np.float32), np.asarray(v.features, np.float32)
            acc += np.float32(w) * (rows @ columns.T)
        out[start:stop] = acc
    return out


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_streamed_scores_equal_the_simple_path_exactly(tmp_path, dtype):
    """Reused buffers, one read per block and torch's cast change no bit of any score. (Across block
    sizes scores agree to float32 rounding only: BLAS sums a one-row block in another order.)"""
    rng = np.random.default_rng(3)
    train_ids, val_ids, weights = [f"t{i}" for i in range(53)], [f"v{j}" for j in range(7)], [0.7, 0.3]
    trains = [_store(tmp_path / f"t{e}", train_ids, _unit(rng, 53, 24), f"epoch-{e}", dtype) for e in range(2)]
    vals = [_store(tmp_path / f"v{e}", val_ids, _unit(rng, 7, 24), f"epoch-{e}") for e in range(2)]
    in_memory = sum(np.float32(w) * (np.asarray(t.features, np.float32) @ np.asarray(v.features, np.float32).T)
                    for t, v, w in zip(trains, vals, weights))
    for block_rows in (1, 8, 53, 1000):
        out = np.full((53, 7), np.nan, dtype=np.float32)
        attribution_into(out, trains, vals, weights, block_rows=block_rows)
        np.testing.assert_array_equal(out, _simple_scores(trains, vals, weights, block_rows))
        np.testing.assert_allclose(out, in_memory, rtol=1e-5, atol=1e-6)
    rows = np.empty((10, 24), np.float32)
    np.testing.assert_array_equal(trains[0].read_into(45, 53, rows), trains[0].block(45, 53))


def test_mismatched_checkpoints_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    t = _store(tmp_path / "t", ["a", "b"], _unit(rng, 2, 4), "epoch-1")
    v = _store(tmp_path / "v", ["x"], _unit(rng, 1, 4), "epoch-2")
    with pytest.raises(ArtifactMismatchError, match="differ in checkpoint"):
        attribution_into(np.zeros((2, 1), np.float32), [t], [v], [1.0])


def test_zero_feature_rows_are_excluded(tmp_path):
    rng = np.random.default_rng(2)
    values = _unit(rng, 3, 4)
    values[1] = 0  # an example with no response token
    t = _store(tmp_path / "t", ["a", "b", "c"], values, "epoch-1")
    v = _store(tmp_path / "v", ["x"], _unit(rng, 1, 4), "epoch-1")
    facts = write_attribution(tmp_path / "s", [t], [v], [1.0], [{"id": "x", "task": "k"}])
    assert facts["excluded_rows"] == 1 and AttributionMatrix.load(tmp_path / "s").excluded == ["b"]
