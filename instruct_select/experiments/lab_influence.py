"""Influence-based selection on the lab: every method at every budget and seed, mean ± spread.

The influence artifacts (warmup, features, scores) are computed once and shared by every cell:
seeds vary the selection (where the method is random) and the fine-tuning.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..artifacts import atomic_write_json, atomic_write_text
from ..layout import RunLayout
from ..select.registry import available_selectors
from . import Grid, command_line, parse_list, write_results_section

if TYPE_CHECKING:  # the lab imports torch; --help should not wait for it
    from ..run.demo import DemoSettings


def resolve_methods(text: str) -> list[str]:
    return list(available_selectors()) if text == "all" else parse_list(text)


def run_experiments(run_dir: str | Path, lab_dir: str | Path, grid: Grid, template: DemoSettings, *,
                    progress: bool = True, log=print) -> tuple[str, Grid]:
    """Every method of ``template`` at every budget and seed of ``grid``: (markdown tables, grid)."""
    from ..run.demo import demo_config
    from ..lab.build import build_lab
    from ..run.pipeline import context_for, execute

    start = time.time()
    lab = build_lab(lab_dir, template.lab, progress=progress, log=log)
    layout = RunLayout(run_dir)
    context = context_for(demo_config(lab, run_dir, template), progress=progress, log=log)  # the pool, read once

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


def add_arguments(parser) -> None:
    parser.add_argument("--budgets", default="5%,10%,15%", help="comma-separated budgets (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--methods", default="all", help="comma-separated methods or 'all' (default: %(default)s)")
    parser.add_argument("--model-size", default="large", help="lab model to fine-tune (default: %(default)s)")
    parser.add_argument("--run-dir", default="runs/experiments", help="(default: %(default)s)")
    parser.add_argument("--lab", default="runs/lab", help="(default: %(default)s)")
    parser.add_argument("--results", default="results/lab_influence.md", help="results file to update ('' to skip; default: %(default)s)")


def main(args) -> None:
    from ..run.demo import DemoSettings

    start = time.time()
    grid = Grid(parse_list(args.budgets), [int(s) for s in parse_list(args.seeds)])
    template = DemoSettings(methods=resolve_methods(args.methods), model_size=args.model_size)
    markdown, _ = run_experiments(args.run_dir, args.lab, grid, template, progress=not args.quiet)
    body = (f"Command: `{command_line()}` ({time.strftime('%Y-%m-%d')}, {(time.time() - start) / 60:.0f} min on "
            f"this machine including cached stages).\n\n{markdown}")
    if args.results:
        write_results_section(args.results, "influence-experiments", "Influence-based selection on the lab", body)
        print(f"results written to {args.results}")
    print(markdown)
