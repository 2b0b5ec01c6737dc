"""Comparisons over budgets and seeds on the lab, written as mean ± spread tables to docs/RESULTS.md.

    instruct-select experiment --budgets 5%,10%,15% --seeds 0,1,2 --methods all

Every (method, budget, seed) run is a cached set of stages under the run directory, so an
interrupted experiment resumes and a finished one re-renders instantly. The influence artifacts
(warmup, features, scores) are computed once and shared: seeds vary the selection (where the
method is random) and the fine-tuning.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from .artifacts import atomic_write_json, atomic_write_text
from .demo import DemoSettings, compare_methods, method_label
from .lab.build import LabSettings, build_lab
from .report.tables import capability_table, mean_spread_table
from .select.base import available_selectors


def resolve_methods(text: str) -> list[str]:
    if text == "all":
        return list(available_selectors())
    return [m.strip() for m in text.split(",") if m.strip()]


def run_experiments(run_dir: str | Path, lab_dir: str | Path, budgets: list[str], seeds: list[int],
                    methods: list[str], *, model_size: str = "large", lab: LabSettings | None = None,
                    progress: bool = True, log=print) -> tuple[str, dict]:
    """Run every combination and return (markdown tables, raw rows)."""
    start = time.time()
    run_dir = Path(run_dir)
    paths = build_lab(lab_dir, lab or LabSettings(), progress=progress, log=log)
    runs: dict[str, dict[str, list[dict]]] = {}
    base_row = None
    for budget in budgets:
        per_method: dict[str, list[dict]] = {}
        for seed in seeds:
            settings = DemoSettings(budget=budget, seed=seed, methods=methods, model_size=model_size,
                                    include_base=base_row is None, lab=lab or LabSettings())
            rows = compare_methods(paths, run_dir, settings, progress=progress, log=log)
            base_row = rows.pop("base (no tuning)", base_row)
            for method in methods:
                per_method.setdefault(method, []).append(rows[method_label(method, settings.budget)])
        runs[budget] = per_method
    parts = []
    if base_row is not None:
        parts.append("Untuned base model:\n\n" + capability_table({"base (no tuning)": base_row}))
    for budget, per_method in runs.items():
        parts.append(f"Budget {budget} (mean ± std over seeds {', '.join(map(str, seeds))}):\n\n"
                     + mean_spread_table(per_method))
    markdown = "\n\n".join(parts)
    atomic_write_json(run_dir / "experiments.json", {"budgets": budgets, "seeds": seeds, "methods": methods,
                                                     "base": base_row, "runs": runs,
                                                     "seconds": round(time.time() - start, 1)})
    atomic_write_text(run_dir / "experiments.md", markdown + "\n")
    return markdown, runs


def write_results_section(results_path: str | Path, key: str, title: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- BEGIN key -->`` and ``<!-- END key -->``."""
    path = Path(results_path)
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    section = f"{begin}\n## {title}\n\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(path, text)


def command_line() -> str:
    return "instruct-select " + " ".join(shlex.quote(a) for a in sys.argv[1:])
