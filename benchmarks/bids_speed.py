"""BIDS at the paper's scale: a 288,000 x 350 float32 attribution matrix at a 15% budget.

    python benchmarks/bids_speed.py [--rows 288000] [--cols 350] [--budget 0.15]

Prints the time of normalisation + fast selection, its peak extra memory (tracemalloc, which
numpy reports to) as a multiple of the matrix, and the speed-up over the naive Algorithm 1 on a
smaller matrix where both run (same process). Goal on 2 cores: <= 10 s and <= 3x the matrix.
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from instruct_select.select.bids import bids_fast, bids_naive
from instruct_select.select.less import column_statistics, standardise_columns


def run_bids(matrix: np.ndarray, budget: int) -> list[int]:
    mean, std, _, _ = column_statistics(matrix)
    return bids_fast(matrix, budget, mean, std)  # normalises on demand: no second matrix


def timed_bids(matrix: np.ndarray, budget: int) -> tuple[list[int], float, int]:
    """Time one run, then measure peak allocation in a second (tracemalloc slows allocation)."""
    start = time.perf_counter()
    picks = run_bids(matrix, budget)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    run_bids(matrix, budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return picks, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=288_000)
    parser.add_argument("--cols", type=int, default=350)
    parser.add_argument("--budget", type=float, default=0.15)
    parser.add_argument("--small-rows", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    budget = round(args.budget * args.rows)
    picks, seconds, peak = timed_bids(matrix, budget)
    assert len(set(picks)) == budget
    total = (matrix.nbytes + peak) / matrix.nbytes
    print(f"full scale: {args.rows} x {args.cols} float32 ({matrix.nbytes / 2**20:.0f} MiB), budget {budget}")
    print(f"  fast BIDS (normalise + select): {seconds:.2f} s; peak memory {total:.2f}x the matrix "
          f"(matrix + {peak / 2**20:.0f} MiB allocated during selection)")

    small = matrix[: args.small_rows].copy()
    small_budget = round(args.budget * args.small_rows)
    normalised, _ = standardise_columns(small)
    start = time.perf_counter()
    naive = bids_naive(normalised, small_budget)
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    fast = bids_fast(normalised, small_budget)
    fast_s = time.perf_counter() - start
    assert fast == naive, "fast and naive selections differ"
    print(f"small scale: {args.small_rows} x {args.cols}, budget {small_budget}: naive {naive_s:.2f} s, "
          f"fast {fast_s:.3f} s -> fast is {naive_s / fast_s:.0f}x faster (identical picks)")
    print(f"  naive cost scales as B*N*|V|: at full scale it would take about "
          f"{naive_s * (budget * args.rows) / (small_budget * args.small_rows) / 3600:.1f} h")


if __name__ == "__main__":
    main()
