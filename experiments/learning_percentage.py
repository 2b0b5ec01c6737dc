"""Learning percentage on the capability lab: does a small model pick the hard examples a larger one needs?

    python experiments/learning_percentage.py                 # the full comparison (hours on a CPU)
    python experiments/learning_percentage.py --budgets 10% --seeds 0 --selectors small   # a quicker look
    python experiments/learning_percentage.py --tiny --run-dir /tmp/lp-tiny --out /tmp/lp-tiny/results.md

For every budget (default 5%, 10%, 15%) and seed (default 0, 1, 2) it fine-tunes the target lab
model (default 'large') on: a random selection; lp-hard and lp-easy selections made by each
selection model (default the 'small' and the 'large' lab models, each trained on the whole pool
for --epochs epochs); and the full pool. Each model is evaluated on every capability's test set.
The tables (mean ± std over seeds per capability, macro, worst, spread) and Kendall τ between the
selection models' LP rankings are written to --out and printed. Every stage is cached under
--run-dir, so an interrupted run resumes and a finished one re-renders at once. --tiny runs the
same code on a lab small enough to finish in minutes (one model size: selection = target = small).
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

from instruct_select.artifacts import atomic_write_text
from instruct_select.learning_percentage_run import LPSettings, agreement, model_trajectories, run_learning_percentage
from instruct_select.lab.presets import tiny_lab_settings
from instruct_select.report.tables import mean_spread_table

LP_METHODS = ("lp-hard", "lp-easy")


def run_experiment(lab, run_dir: str | Path, *, budgets: list[str], seeds: list[int], selectors: list[str],
                   target: str, settings: LPSettings, progress: bool = True, log=print) -> str:
    """Run every arm and return the Markdown report."""
    run_dir = Path(run_dir)
    common = dict(settings=settings, progress=progress, log=log)
    tables = []
    for budget in budgets:
        rows: dict[str, list[dict]] = {}
        for seed in seeds:
            arms = [("random", None), *((m, s) for s in selectors for m in LP_METHODS), ("full", None)]
            for method, selector in arms:
                label = method if selector is None else f"{method} (by {selector})"
                log(f"[lp-experiment] {label} @ {budget}, seed {seed}")
                result = run_learning_percentage(lab.pool, lab.test, lab.model(selector or target), lab.model(target),
                                                 run_dir, method=method, budget=budget, seed=seed,
                                                 selection_label=selector or target, target_label=target, **common)
                rows.setdefault(label, []).append(result["summary"])
        tables.append(f"### Budget {budget} (target '{target}', mean ± std over seeds {', '.join(map(str, seeds))})\n\n"
                      + mean_spread_table(rows))
    return "\n\n".join(tables + [agreement_section(lab, run_dir, selectors, settings, progress, log)])


def agreement_section(lab, run_dir: Path, selectors: list[str], settings: LPSettings, progress: bool, log) -> str:
    """Kendall τ between every pair of selection models' LP (over the examples both learned)."""
    if len(selectors) < 2:
        return "Kendall τ: only one selection model, nothing to compare."
    lines = ["| models | Kendall τ | examples | left out |", "|---|---|---|---|"]
    for a, b in itertools.combinations(selectors, 2):
        trajectories = [model_trajectories(lab.model(s), lab.pool, run_dir / "selectors" / s, settings,
                                           progress=progress, log=log) for s in (a, b)]
        value = agreement(*trajectories, settings, run_dir / f"agreement-{a}-vs-{b}.json")
        lines.append(f"| {a} vs {b} | {value['tau']:.3f} | {value['n']} | {sum(value['left_out'].values())} |")
    return f"### Agreement of LP ({settings.variant}) between selection models\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="runs/lab", help="lab folder (built if missing)")
    parser.add_argument("--run-dir", default="runs/learning_percentage")
    parser.add_argument("--out", default="experiments/learning_percentage_results.md")
    parser.add_argument("--budgets", default="5%,10%,15%")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--selectors", default=None, help="selection model sizes (default small,large; tiny: small)")
    parser.add_argument("--target", default=None, help="target model size (default large; tiny: small)")
    parser.add_argument("--epochs", type=int, default=None, help="selection-model epochs n (default 3; tiny: 2)")
    parser.add_argument("--variant", default="lp1", choices=["lp1", "lp_app"])
    parser.add_argument("--tiny", action="store_true", help="a tiny lab in --lab, to check the script quickly")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    from instruct_select.lab.build import build_lab

    start = time.time()
    lab = build_lab(args.lab, tiny_lab_settings() if args.tiny else None, progress=not args.quiet)
    selectors = (args.selectors or ("small" if args.tiny else "small,large")).split(",")
    target = args.target or ("small" if args.tiny else "large")
    settings = LPSettings(epochs=args.epochs or (2 if args.tiny else 3), variant=args.variant)
    markdown = run_experiment(lab, args.run_dir, budgets=args.budgets.split(","),
                              seeds=[int(s) for s in args.seeds.split(",")], selectors=selectors, target=target,
                              settings=settings, progress=not args.quiet)
    command = " ".join(["python experiments/learning_percentage.py",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    header = (f"## Learning percentage on the lab\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, "
              f"{(time.time() - start) / 60:.0f} min including cached stages). "
              f"Accuracy (%) per capability on held-out test sets; selection models trained {settings.epochs} "
              f"epochs on the whole pool; LP variant {settings.variant}.")
    atomic_write_text(args.out, f"{header}\n\n{markdown}\n")
    print(f"{header}\n\n{markdown}\n\n(written to {args.out})")


if __name__ == "__main__":
    main()
