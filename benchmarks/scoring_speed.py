"""Blockwise scoring from disk against the same matmul in memory, measured in one run.

    python benchmarks/scoring_speed.py [--rows 100000] [--dim 8192] [--val 350]

Writes a float16 feature store of ``rows`` x ``dim`` (about 1.6 GB at the defaults) to a temporary
folder, then times (1) ``attribution_into`` streaming it from disk in row blocks and (2) the same
product with the features already in memory as float32. Prints the ratio and the peak memory of
the streamed run beyond its output (tracemalloc), which stays at a few blocks whatever ``rows`` is.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from instruct_select.features.store import FeatureStore
from instruct_select.influence.attribution import attribution_into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--val", type=int, default=350)
    parser.add_argument("--block-rows", type=int, default=16384)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        ids = [str(i) for i in range(args.rows)]
        meta = {"model": "bench", "checkpoint": "epoch-1", "projection_seed": 0}
        train = FeatureStore.open_or_create(Path(tmp) / "train", ids, args.dim, "float16", meta)
        for start in range(0, args.rows, 8192):
            stop = min(args.rows, start + 8192)
            train.write(ids[start:stop], rng.standard_normal((stop - start, args.dim), dtype=np.float32))
        val = FeatureStore.open_or_create(Path(tmp) / "val", [f"v{j}" for j in range(args.val)], args.dim, "float32", meta)
        val.write(val.ids, rng.standard_normal((args.val, args.dim), dtype=np.float32))
        train, val = FeatureStore.open(Path(tmp) / "train"), FeatureStore.open(Path(tmp) / "val")

        out = np.zeros((args.rows, args.val), dtype=np.float32)
        tracemalloc.start()
        start = time.perf_counter()
        attribution_into(out, [train], [val], [1.0], block_rows=args.block_rows, progress=False)
        streamed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        in_memory_train = np.asarray(train.features, dtype=np.float32)
        val_matrix = val.block(0, args.val)
        start = time.perf_counter()
        dense = in_memory_train @ val_matrix.T
        in_memory = time.perf_counter() - start
        np.testing.assert_allclose(out, dense, rtol=1e-4, atol=1e-3)
        print(f"{args.rows} x {args.dim} float16 features on disk ({train.features.nbytes / 2**30:.2f} GiB) "
              f"against {args.val} validation features")
        print(f"  streamed from disk, blocks of {args.block_rows}: {streamed:.2f} s "
              f"(peak {peak / 2**20:.0f} MiB beyond the output)")
        print(f"  same matmul in memory (float32):   {in_memory:.2f} s")
        print(f"  ratio streamed / in memory: {streamed / in_memory:.2f}")


if __name__ == "__main__":
    main()
