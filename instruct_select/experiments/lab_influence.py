"""Influence-based selection on the lab: every method at every budget and seed, mean ± spread.

The influence artifacts (warmup, features, scores) are computed once and shared by every cell:
seeds vary the selection (where the method is random) and the fine-tuning.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..artifacts import atomic_write_json, atomic_write_text
from ..lab.build import build_lab
from ..layout import RunLayout
from ..run.demo import DemoSettings, demo_config
from ..run.pipeline import context_for, execute
from ..select.registry import available_selectors
from . import Grid, command_line, parse_list, write_results_section


def resolve_methods(text: str) -> list[str]:
    """The methods of ``--methods``: a comma-separated list, or every registered selector for "all"."""
    return list(available_selectors()) if text == "all" else parse_list(text)


def run_experiments(run_dir: str | Path, lab_dir: str | Path, grid: Grid, template: DemoSettings) -> tuple[str, Grid]:
    """Every method of ``template`` at every budget and seed of ``grid`` on the lab in ``lab_dir``
    (built if missing), into ``run_dir``: (markdown tables, grid with its rows). Scores are
    accuracies; the tables show them in % as mean ± std over seeds."""
    start = time.time()
    lab = build_lab(lab_dir, template.lab)
    layout = RunLayout(run_dir)
    context = context_for(demo_config(lab, run_dir, template))  # the pool, read once

    def one(budget: str, seed: int, first: bool) -> dict[str, dict]:
        settings = dataclasses.replace(template, budget=budget, seed=seed, include_base=first)
        return execute(context, demo_config(lab, run_dir, settings)).rows()

    grid.run(one)
    markdown = grid.markdown(lambda b: f"Budget {b} (mean ± std over seeds {', '.join(map(str, grid.seeds))})")
    atomic_write_json(layout.experiments_json, {"budgets": grid.budgets, "seeds": grid.seeds,
                                                "methods": template.methods, "base": grid.base, "runs": grid.rows,
                                                "seconds": round(time.time() - start, 1)})
    atomic_write_text(layout.experiments_md, markdown + "\n")
    return markdown, grid


def main(args) -> None:
    """``instruct-select experiment influence`` (arguments in ``commands/experiments.py``): runs the
    grid, updates the results file and prints the tables."""
    start = time.time()
    grid = Grid(parse_list(args.budgets), [int(s) for s in parse_list(args.seeds)])
    template = DemoSettings(methods=resolve_methods(args.methods), model_size=args.model_size)
    markdown, _ = run_experiments(args.run_dir, args.lab, grid, template)
    body = (f"Command: `{command_line()}` ({time.strftime('%Y-%m-%d')}, {(time.time() - start) / 60:.0f} min on "
            f"this machine including cached stages).\n\n{markdown}")
    if args.results:
        write_results_section(args.results, "influence-experiments", "Influence-based selection on the lab", body)
        print(f"results written to {args.results}")
    print(markdown)
