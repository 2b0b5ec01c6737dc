"""Learning percentage on the lab: does a small model pick the hard examples a larger one needs?

For every budget and seed it fine-tunes the target lab model on: a random selection; lp-hard and
lp-easy selections made by each selection model (each trained on the whole pool for n epochs);
and the full pool. Tables are mean ± std over seeds per capability; Kendall τ compares the
selection models' LP rankings. ``--tiny`` runs the same code on a lab small enough to finish in
minutes (one model size: selection = target = small).
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import atomic_write_json, atomic_write_text
from ..config import LPSettings, RunConfig
from ..lab.presets import lab_eval_settings, lab_train_settings
from ..layout import RunLayout
from ..budget import Budget
from . import Grid, command_line, parse_list

if TYPE_CHECKING:  # the lab imports torch; --help should not wait for it
    from ..lab.build import LabPaths

LP_METHODS = ["lp-hard", "lp-easy"]


def lp_config(lab: LabPaths, run_dir: str | Path, target: str, selector: str | None, lp: LPSettings) -> RunConfig:
    """lp-hard and lp-easy selected by ``selector`` (None: the random and full baselines) for ``target``."""
    methods = LP_METHODS if selector else ["random", "full"]
    learning_percentage = dataclasses.replace(
        lp, selection_model=str(lab.model(selector or target)), label=selector or "",
        selection_train=lab_train_settings(seed=0, epochs=lp.epochs))
    return RunConfig(model=str(lab.model(target)), pool=str(lab.pool), tests=str(lab.test), run_dir=str(run_dir),
                     methods=methods, budgets=["10%"], dtype="float32", device="auto",
                     learning_percentage=learning_percentage, train=lab_train_settings(), eval=lab_eval_settings())


def run_experiment(lab: LabPaths, run_dir: str | Path, grid: Grid, selectors: list[str], target: str,
                   lp: LPSettings, *, progress: bool = True, log=print) -> str:
    """Run every arm of every cell and return the Markdown report."""
    from ..run.pipeline import context_for, execute

    configs = [lp_config(lab, run_dir, target, s, lp) for s in [None, *selectors]]
    context = context_for(configs[0], progress=progress, log=log)  # the pool, read once

    def one(budget: str, seed: int, first: bool) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        for config in configs:
            cell = dataclasses.replace(config, budgets=[budget], seed=seed)
            for label, result in execute(context, cell).arms.items():
                rows[label.replace(f" @ {Budget.parse(budget)}", "")] = result.summary
        order = ["random", *(f"{m} (by {s})" for s in selectors for m in LP_METHODS), "full"]
        return {label: rows[label] for label in order}

    grid.run(one)
    title = (lambda b: f"### Budget {b} (target '{target}', mean ± std over seeds "
                       f"{', '.join(map(str, grid.seeds))})")
    return grid.markdown(title) + "\n\n" + agreement_section(RunLayout(run_dir), selectors, lp)


def agreement_section(layout: RunLayout, selectors: list[str], lp: LPSettings) -> str:
    """Kendall τ between every pair of selection models' LP (over the examples both learned)."""
    from ..features.trajectories import LossTrajectories
    from ..select.learning_percentage import lp_agreement

    if len(selectors) < 2:
        return "Kendall τ: only one selection model, nothing to compare."
    lines = ["| models | Kendall τ | examples | left out |", "|---|---|---|---|"]
    for a, b in itertools.combinations(selectors, 2):
        trajectories = [LossTrajectories.load(layout.selection_model(s).losses) for s in (a, b)]
        value = lp_agreement(*trajectories, lp.variant, lp.tolerance)
        atomic_write_json(layout.agreement(a, b), value)
        lines.append(f"| {a} vs {b} | {value['tau']:.3f} | {value['n']} | {sum(value['left_out'].values())} |")
    return f"### Agreement of LP ({lp.variant}) between selection models\n\n" + "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--lab", default="runs/lab", help="lab folder (built if missing)")
    parser.add_argument("--run-dir", default="runs/learning_percentage")
    parser.add_argument("--out", default="results/learning_percentage.md")
    parser.add_argument("--budgets", default="5%,10%,15%")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--selectors", default=None, help="selection model sizes (default small,large; tiny: small)")
    parser.add_argument("--target", default=None, help="target model size (default large; tiny: small)")
    parser.add_argument("--epochs", type=int, default=None, help="selection-model epochs n (default 3; tiny: 2)")
    parser.add_argument("--variant", default="lp1", choices=["lp1", "lp_app"])
    parser.add_argument("--tiny", action="store_true", help="a tiny lab in --lab, to check the experiment quickly")


def main(args) -> None:
    from ..lab.build import build_lab
    from ..lab.presets import tiny_lab_settings

    start = time.time()
    lab = build_lab(args.lab, tiny_lab_settings() if args.tiny else None, progress=not args.quiet)
    selectors = parse_list(args.selectors or ("small" if args.tiny else "small,large"))
    target = args.target or ("small" if args.tiny else "large")
    lp = LPSettings(epochs=args.epochs or (2 if args.tiny else 3), variant=args.variant)
    grid = Grid(parse_list(args.budgets), [int(s) for s in parse_list(args.seeds)])
    markdown = run_experiment(lab, args.run_dir, grid, selectors, target, lp, progress=not args.quiet,
                              log=(lambda m: None) if args.quiet else print)
    header = (f"## Learning percentage on the lab\n\nCommand: `{command_line()}` ({time.strftime('%Y-%m-%d')}, "
              f"{(time.time() - start) / 60:.0f} min including cached stages). "
              f"Accuracy (%) per capability on held-out test sets; selection models trained {lp.epochs} "
              f"epochs on the whole pool; LP variant {lp.variant}.")
    atomic_write_text(args.out, f"{header}\n\n{markdown}\n")
    print(f"{header}\n\n{markdown}\n\n(written to {args.out})")
