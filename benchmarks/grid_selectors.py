"""The grid's selectors on one similarity matrix: time and peak extra memory of each rule, and the
round-robin's pointer form against its naive argmax form (same process, interleaved, repeated).

    python benchmarks/grid_selectors.py [--rows 50000] [--cols 250] [--budget 0.1] [--repeats 3]

Memory is tracemalloc's peak (numpy reports its buffers to it) as a multiple of the float32
matrix. The rules read only S, so the representation does not change these numbers.
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from instruct_select.select.grid import RULES
from instruct_select.select.round_robin import round_robin_fast, round_robin_naive


def timed(fn, repeats: int) -> tuple[float, int]:
    """Best-of-``repeats`` seconds, then one traced run for the peak allocation."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--cols", type=int, default=250)
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 0.9, (args.rows, args.cols)).astype(np.float32)
    ids = [f"p{i}" for i in range(args.rows)]
    columns = [{"id": f"v{j}", "task": f"t{j % 5}", "subtask": None} for j in range(args.cols)]
    limit = int(args.budget * args.rows)
    print(f"S: {args.rows} x {args.cols} float32 ({scores.nbytes / 2**20:.0f} MiB), budget {limit}, 5 tasks, "
          f"best of {args.repeats}\n")
    print("| selector | seconds | peak extra memory (x S) |\n|---|---|---|")
    for name, (rule, _) in RULES.items():
        seconds, peak = timed(lambda: rule(scores, ids, columns, {}, limit), args.repeats)
        print(f"| {name} | {seconds:.2f} | {peak / scores.nbytes:.1f} |")
    tasks = [c["task"] for c in columns]
    fast, naive = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both
        for form, out in ((round_robin_fast, fast), (round_robin_naive, naive)):
            start = time.perf_counter()
            picks = form(scores, tasks, limit)
            out.append(time.perf_counter() - start)
    assert round_robin_fast(scores, tasks, limit) == picks  # the same picks (naive ran last)
    print(f"\nround-robin: pointer form {min(fast):.2f} s, naive argmax form {min(naive):.2f} s, "
          f"ratio {min(naive) / min(fast):.1f}x")


if __name__ == "__main__":
    main()
