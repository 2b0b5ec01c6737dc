"""Is there an influence bias across tasks in an attribution matrix? (the BIDS paper's question)

    python dev/influence_bias.py runs/demo/influence/scores runs/lab/data/pool.jsonl [--budget 15%]

Prints, from a finished scores folder: the mean raw influence of each pool task on each validation
task, the spread of column means and standard deviations across validation tasks (a task whose
instances have larger influence values everywhere pulls LESS's task-max towards it), and the
per-task composition and THI counts of LESS, instance-max, normalized and BIDS selections at the
budget. If LESS over-selects one task and BIDS evens it out, the bias is present.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from instruct_select.data.loading import load_examples
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.select.base import SelectionContext
from instruct_select.select.selection import run_selector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores")
    parser.add_argument("pool")
    parser.add_argument("--budget", default="15%")
    args = parser.parse_args()
    matrix = AttributionMatrix.load(args.scores)
    pool = load_examples(args.pool).examples
    scores = np.asarray(matrix.scores, dtype=np.float32)
    task_of = {e.id: e.task for e in pool}
    val_tasks = sorted(set(matrix.tasks))
    pool_tasks = sorted({str(t) for t in task_of.values()})
    rows_by_task = defaultdict(list)
    for i, id_ in enumerate(matrix.rows):
        rows_by_task[str(task_of[id_])].append(i)
    cols = {t: [j for j, c in enumerate(matrix.tasks) if c == t] for t in val_tasks}
    print("mean raw influence (rows: pool task, columns: validation task)")
    print("pool \\ val".ljust(12) + "".join(t.rjust(11) for t in val_tasks))
    for pt in pool_tasks:
        block = scores[rows_by_task[pt]]
        print(pt.ljust(12) + "".join(f"{block[:, cols[vt]].mean():11.4f}" for vt in val_tasks))
    print("\nper validation task: mean and std of its columns over all pool rows")
    for vt in val_tasks:
        part = scores[:, cols[vt]]
        print(f"  {vt:<10} mean {part.mean():.4f}  std {part.std(axis=0).mean():.4f}")
    print(f"\nselections at {args.budget}: composition by pool task | THI (raw) by validation task")
    artifacts = {"attribution": matrix}
    for method in ("less", "instance-max", "normalized", "bids"):
        sel = run_selector(method, SelectionContext(pool, artifacts=artifacts), args.budget)
        comp = sel.diagnostics["composition"]
        thi = sel.diagnostics["influence"]["raw"]["thi"]
        print(f"  {method:<13} " + " ".join(f"{t}={comp.get(t, 0)}" for t in pool_tasks)
              + " | " + " ".join(f"{t}={thi.get(t, 0)}" for t in val_tasks))


if __name__ == "__main__":
    main()
