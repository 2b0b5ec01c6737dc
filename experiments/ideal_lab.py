"""IDEAL on the capability lab: the pool as given vs IDEAL after each round, and IDEAL + BIDS.

    . .venv/bin/activate
    python experiments/ideal_lab.py                              # the lab, 3 seeds (CPU: slow)
    python experiments/ideal_lab.py --tiny --out /tmp/ideal.md   # a smoke run on a tiny lab (~1-2 min)

For each seed, ``run_ideal`` trains the lab model on the pool as given ("uniform": every domain
at its own volume, the paper's joint-SFT baseline), measures each capability's influence on the
validation sets (the reference), resizes the domains, and retrains, for ``--rounds`` rounds; each
model is scored per capability on the test sets. With ``--bids BUDGET`` BIDS then selects BUDGET of
the final IDEAL mixture (its own warmup and gradient features on that mixture) and the model
trained on that selection is scored too, beside BIDS at the same budget on the pool as given.

Every step is a cached stage under ``--run-dir``, so an interrupted run resumes and a finished one
re-renders at once. The tables (mean ± std over seeds, accuracy in %) go to ``--out`` (default
experiments/ideal_results.md), the raw rows to RUN_DIR/ideal_lab.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from instruct_select.artifacts import atomic_write_json, atomic_write_text
from instruct_select.ideal import IdealSettings, mixture_for_selection, run_ideal
from instruct_select.lab.build import LabPaths, LabSettings, build_lab
from instruct_select.lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings
from instruct_select.pipeline import evaluate_stage, prepare_artifacts, select_stage, train_stage
from instruct_select.lab.presets import tiny_lab_settings
from instruct_select.report.tables import mean_spread_table


def ideal_settings(seed: int, rounds: int, tiny: bool) -> IdealSettings:
    train = lab_train_settings(seed=seed, save_checkpoints=False, **({"epochs": 1} if tiny else {}))
    return IdealSettings(rounds=rounds, seed=seed, device="cpu", dtype="float32", train=train,
                         eval=lab_eval_settings())


def bids_row(lab: LabPaths, model: Path, pool: Path, folder: Path, budget: str, seed: int, tiny: bool,
             progress: bool, log) -> dict:
    """BIDS at ``budget`` of ``pool`` (warmup and features on that pool), trained and scored."""
    influence = lab_influence_settings(seed=seed)
    if tiny:
        influence.warmup.epochs, influence.features.dim = 1, 64
    artifacts, fingerprints = prepare_artifacts({"attribution"}, pool, lab.validation, model, folder / "influence",
                                                influence, device="cpu", progress=progress, log=log)
    selection = select_stage(pool, "bids", budget, folder / "select", seed=seed, artifacts=artifacts,
                             artifact_fingerprints=fingerprints, log=log)
    train = lab_train_settings(seed=seed, save_checkpoints=False, **({"epochs": 1} if tiny else {}))
    trained = train_stage(model, pool, folder / "train", train, selection_dir=selection.path, device="cpu",
                          progress=progress, log=log)
    return evaluate_stage(trained.path / "model", lab.test, folder / "evaluation", lab_eval_settings(),
                          device="cpu", progress=progress, log=log).manifest["outputs"]


def run_seed(lab: LabPaths, model: Path, run_dir: Path, seed: int, args, log) -> tuple[dict[str, dict], dict]:
    """Rows {label: {"scores", "summary"}} for one seed, and its IDEAL summary."""
    folder = run_dir / f"seed{seed}"
    summary = run_ideal(lab.pool, lab.validation, model, folder, ideal_settings(seed, args.rounds, args.tiny),
                        tests=lab.test, progress=not args.quiet, log=log)
    metrics = [r["metrics"] for r in summary["rounds"]] + [summary["final"]["metrics"]]
    rows = {"uniform (pool as given)": metrics[0]}
    rows.update({f"IDEAL round {r}": m for r, m in enumerate(metrics[1:], start=1)})
    if args.bids:
        rows[f"BIDS @ {args.bids} (pool as given)"] = bids_row(lab, model, lab.pool, folder / "bids-pool", args.bids,
                                                               seed, args.tiny, not args.quiet, log)
        rows[f"IDEAL + BIDS @ {args.bids}"] = bids_row(lab, model, mixture_for_selection(folder),
                                                       folder / "bids-ideal", args.bids, seed, args.tiny,
                                                       not args.quiet, log)
    return rows, summary


def volumes_table(summaries: dict[int, dict]) -> str:
    """Domain volumes entering each round and after the last, per seed."""
    domains = next(iter(summaries.values()))["domains"]
    lines = ["| seed | mixture | " + " | ".join(domains) + " | total |", "|" + "---|" * (len(domains) + 3)]
    for seed, summary in summaries.items():
        stages = [("pool", summary["pool_volumes"])] + [(f"after round {r['round']}", r["volumes"]["after"])
                                                       for r in summary["rounds"]]
        for name, volumes in stages:
            cells = [str(volumes[d]) for d in domains] + [str(sum(volumes.values()))]
            lines.append(f"| {seed} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab-dir", default="runs/lab", help="where the lab is (or is built)")
    parser.add_argument("--run-dir", default="runs/ideal-lab", help="where every stage writes")
    parser.add_argument("--model-size", default="large", help="lab model size (tiny lab: small)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--rounds", type=int, default=2, help="IDEAL rounds (paper: 2)")
    parser.add_argument("--bids", default="50%", help="BIDS budget inside the mixture; '' skips BIDS")
    parser.add_argument("--tiny", action="store_true", help="a tiny lab and 1-epoch training: a smoke run")
    parser.add_argument("--out", default="experiments/ideal_results.md", help="the Markdown results file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage logs")
    args = parser.parse_args(argv)
    log = (lambda message: None) if args.quiet else print
    start = time.time()
    lab = build_lab(args.lab_dir, tiny_lab_settings() if args.tiny else LabSettings(), progress=not args.quiet, log=log)
    model = lab.model("small" if args.tiny else args.model_size)
    run_dir = Path(args.run_dir)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs: dict[str, list[dict]] = {}
    summaries: dict[int, dict] = {}
    for seed in seeds:
        rows, summaries[seed] = run_seed(lab, model, run_dir, seed, args, log)
        for label, row in rows.items():
            runs.setdefault(label, []).append(row)
    header = (f"IDEAL on the capability lab{' (TINY smoke run: not a result)' if args.tiny else ''}: lab model "
              f"'{model.name}', {args.rounds} rounds, m = 0.15, seeds {', '.join(map(str, seeds))}. Accuracy (%) "
              "per capability on the test sets, mean ± std over seeds; 'uniform' trains on the pool as "
              "given; 'IDEAL round r' on the mixture after r rounds.")
    markdown = (f"# IDEAL on the lab\n\n{header}\n\n{mean_spread_table(runs)}\n\n"
                f"Domain volumes:\n\n{volumes_table(summaries)}\n\n"
                f"Command: `python experiments/ideal_lab.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
                f"{time.time() - start:.0f} s.\n")
    atomic_write_text(args.out, markdown)
    atomic_write_json(run_dir / "ideal_lab.json", {"seeds": seeds, "runs": runs, "ideal": summaries})
    log(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
