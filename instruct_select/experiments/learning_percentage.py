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

from ..artifacts import atomic_write_json, atomic_write_text
from ..budget import Budget
from ..config import LPSettings, RunConfig
from ..features.trajectories import LossTrajectories
from ..lab.build import LabPaths, build_lab
from ..lab.presets import lab_eval_settings, lab_train_settings, tiny_lab_settings
from ..layout import RunLayout
from ..run.pipeline import context_for, execute
from ..select.learning_percentage import lp_agreement
from . import Grid, command_line, parse_list

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
                   lp: LPSettings) -> str:
    """Run every arm of every cell of ``grid`` (budgets × seeds) into ``run_dir``: random, full, and
    lp-hard and lp-easy selected by each lab model size in ``selectors`` for the ``target`` size,
    with the learning percentage settings ``lp``. Returns the Markdown report (accuracy in %)."""
    configs = [lp_config(lab, run_dir, target, s, lp) for s in [None, *selectors]]
    context = context_for(configs[0])  # the pool, read once

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
    if len(selectors) < 2:
        return "Kendall τ: only one selection model, nothing to compare."
    lines = ["| models | Kendall τ | examples | left out |", "|---|---|---|---|"]
    for a, b in itertools.combinations(selectors, 2):
        trajectories = [LossTrajectories.load(layout.selection_model(s).losses) for s in (a, b)]
        value = lp_agreement(*trajectories, lp.variant, lp.tolerance)
        atomic_write_json(layout.agreement(a, b), value)
        lines.append(f"| {a} vs {b} | {value['tau']:.3f} | {value['n']} | {sum(value['left_out'].values())} |")
    return f"### Agreement of LP ({lp.variant}) between selection models\n\n" + "\n".join(lines)


def main(args) -> None:
    """``instruct-select experiment lp`` (arguments in ``commands/experiments.py``): the grid, the
    report written to ``args.out`` and printed."""
    start = time.time()
    lab = build_lab(args.lab, tiny_lab_settings() if args.tiny else None)
    selectors = parse_list(args.selectors or ("small" if args.tiny else "small,large"))
    target = args.target or ("small" if args.tiny else "large")
    lp = LPSettings(epochs=args.epochs or (2 if args.tiny else 3), variant=args.variant)
    grid = Grid(parse_list(args.budgets), [int(s) for s in parse_list(args.seeds)])
    markdown = run_experiment(lab, args.run_dir, grid, selectors, target, lp)
    header = (f"## Learning percentage on the lab\n\nCommand: `{command_line()}` ({time.strftime('%Y-%m-%d')}, "
              f"{(time.time() - start) / 60:.0f} min including cached stages). "
              f"Accuracy (%) per capability on held-out test sets; selection models trained {lp.epochs} "
              f"epochs on the whole pool; LP variant {lp.variant}.")
    atomic_write_text(args.out, f"{header}\n\n{markdown}\n")
    print(f"{header}\n\n{markdown}\n\n(written to {args.out})")
