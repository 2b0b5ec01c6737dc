"""Blockwise scoring from disk against the same matmul in memory, measured in one run.

    python benchmarks/scoring_speed.py [--rows 100000] [--dim 8192] [--val 350] [--block-rows 16384,4096]

Writes a float16 feature store of ``rows`` x ``dim`` (about 1.6 GB at the defaults) to a temporary
folder, then times (1) ``attribution_into`` streaming it from disk in row blocks (each block size
given) and (2) the same product with the features already in memory as float32; each is run
``--repeats`` times, each streamed run right after an in-memory one, and the best of each kept.
Prints the ratios and the peak memory of the streamed run beyond its output (tracemalloc, in a
run of its own: tracing slows what it traces), which stays at a few blocks whatever ``rows`` is.
Goal: <= 1.1 (issue 21).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from instruct_select.features.store import FeatureStore
from instruct_select.influence.attribution import BLOCK_ROWS, attribution_into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--val", type=int, default=350)
    parser.add_argument("--block-rows", default=str(BLOCK_ROWS), help="comma-separated block sizes to time")
    parser.add_argument("--repeats", type=int, default=2)
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

        in_memory_train = np.asarray(train.features, dtype=np.float32)
        val_matrix = val.block(0, args.val)
        dense = in_memory_train @ val_matrix.T
        print(f"{args.rows} x {args.dim} float16 features on disk ({train.features.nbytes / 2**30:.2f} GiB) "
              f"against {args.val} validation features, best of {args.repeats}, each streamed run right "
              "after a run of the in-memory product (interleaved, so a drift falls on both)")
        out = np.zeros((args.rows, args.val), dtype=np.float32)
        in_memory = []
        for block_rows in [int(b) for b in args.block_rows.split(",")]:
            times, reference = [], []
            for _ in range(args.repeats):
                reference.append(seconds(lambda: in_memory_train @ val_matrix.T))
                times.append(seconds(lambda: attribution_into(out, [train], [val], [1.0], block_rows=block_rows)))
            np.testing.assert_allclose(out, dense, rtol=1e-4, atol=1e-3)
            tracemalloc.start()  # an untimed run: tracing allocations slows what it traces
            attribution_into(out, [train], [val], [1.0], block_rows=block_rows)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            in_memory += reference
            print(f"  streamed from disk, blocks of {block_rows}: {min(times):.2f} s (all: "
                  f"{', '.join(f'{t:.2f}' for t in times)}; peak {peak / 2**20:.0f} MiB beyond the output); "
                  f"in memory beside it {min(reference):.2f} s (all: {', '.join(f'{t:.2f}' for t in reference)}): "
                  f"ratio streamed / in memory {min(times) / min(reference):.2f}")
        print(f"  same matmul in memory (float32), best of all {len(in_memory)} runs: {min(in_memory):.2f} s")


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
