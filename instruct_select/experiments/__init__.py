"""Experiments on the lab: grids of budgets × seeds run through the one pipeline, as tables.

    instruct-select experiment influence --budgets 5%,10%,15% --seeds 0,1,2 --methods all
    instruct-select experiment lp --budgets 10% --seeds 0 --selectors small
    instruct-select experiment ideal --seeds 0 --rounds 2

Each experiment module (``lab_influence``, ``learning_percentage``, ``ideal``) builds run configs from
the lab presets and runs them with ``run.pipeline.execute`` (arms) or ``ideal.run_ideal`` (rounds), so
every stage is cached in the run directory: an interrupted experiment resumes and a finished one
re-renders at once. The tables go to a section of a results file with the command that made them.
"""
from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..artifacts import atomic_write_text
from ..logs import stage_lines
from ..report.tables import mean_spread_tables, results_tables

logger = logging.getLogger(__name__)


@dataclass
class Grid:
    """Budgets × seeds; ``rows[budget][label]`` collects one result row per seed. ``methods``: the
    methods every cell runs, where the experiment takes them as part of its grid (the real benchmark)."""

    budgets: list[str]
    seeds: list[int]
    rows: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    base: dict | None = None
    methods: list[str] = field(default_factory=list)

    def run(self, one: Callable[[str, int, bool], "dict[str, dict]"],
            after_each: Callable[[int, int], None] | None = None) -> "Grid":
        """Call ``one(budget, seed, first)`` for every cell: it returns {label: row} (``first`` is
        True once, for work that is the same in every cell, such as the untuned model's row);
        ``after_each(done, total)`` then sees the rows so far (to write partial results)."""
        first, done, total = True, 0, len(self.budgets) * len(self.seeds)
        for budget in self.budgets:
            per_label = self.rows.setdefault(budget, {})
            for seed in self.seeds:
                with stage_lines(f"[grid] cell {done + 1} of {total}: budget {budget}, seed {seed}", logger):
                    rows = dict(one(budget, seed, first))
                first, done = False, done + 1
                self.base = rows.pop("base (no tuning)", self.base)
                for label, row in rows.items():
                    per_label.setdefault(label, []).append(row)
                if after_each is not None:
                    after_each(done, total)
        return self

    def markdown(self, title: Callable[[str], str]) -> str:
        parts = []
        if self.base is not None:
            parts.append("Untuned base model:\n\n" + results_tables({"base (no tuning)": self.base}))
        parts += [f"{title(budget)}:\n\n{mean_spread_tables(rows)}" for budget, rows in self.rows.items()]
        return "\n\n".join(parts)


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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
