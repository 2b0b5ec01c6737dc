"""Finding what a run directory holds, for the report: selections, scores, results, IDEAL, LP.

Every kind of run (``demo``, ``experiment``, ``run CONFIG``, ``ideal``) writes the one layout of
``layout.RunLayout``, so the report asks the layout where each artifact is and reads it into plain
data; a selection's method, budget and seed come from its own manifest. The plots never see a
path, and a missing artifact is a ``None`` or an empty list that the page reports as absent.

    contents = collect_run("runs/demo")
    contents.selections      # one SelectionInfo per arm with a finished selection
    contents.results         # {budget: {method: [row per seed]}}, rows {"scores", "summary"}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import finished_manifest, read_json
from ..errors import InputError
from ..features.trajectories import LossTrajectories
from ..influence.attribution import AttributionMatrix
from ..influence.diagnostics import column_statistics, influence_diagnostics
from ..layout import RunLayout
from ..select.learning_percentage import LEARNED, learning_percentages
from ..select.selection import read_selected_ids


@dataclass
class SelectionInfo:
    """One selection folder's diagnostics (composition; AID and THI for influence-based methods)."""

    label: str
    method: str
    budget: str
    seed: int
    path: Path
    composition: dict[str, int]
    pool_composition: dict[str, int]
    influence: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """What a plot calls it: ``method @ budget`` (the whole pool is just ``full``)."""
        return self.method if self.method == "full" else f"{self.method} @ {self.budget}"

    def ids(self) -> list[str]:
        return read_selected_ids(self.path)


@dataclass
class RunContents:
    """What ``collect_run`` found; ``searched`` says where, for the page's "absent" notes."""

    root: Path
    selections: list[SelectionInfo] = field(default_factory=list)
    attribution_dir: Path | None = None
    results: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    results_source: Path | None = None
    base_row: dict | None = None
    ideal_summary: dict | None = None
    ideal_source: Path | None = None
    loss_dirs: list[Path] = field(default_factory=list)


def collect_run(run_dir: str | Path) -> RunContents:
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: give the run directory of a demo, an experiment, "
                         "`instruct-select run` or `instruct-select ideal` (e.g. runs/demo)")
    layout = RunLayout(root)
    found = RunContents(root=root)
    found.selections = _selections(layout)
    if (layout.scores / "scores.npy").is_file():
        found.attribution_dir = layout.scores
    _read_results(layout, found)
    # An IDEAL experiment keeps one IDEAL run per seed inside its own folder: the first one found.
    for candidate in [layout, *layout.children()]:
        if candidate.ideal_summary.is_file():
            found.ideal_source, found.ideal_summary = candidate.ideal_summary, read_json(candidate.ideal_summary)
            break
    found.loss_dirs = [m.losses for m in layout.selection_models()
                       if finished_manifest(m.losses / "epoch-0") is not None and (m.losses / "epoch-1").is_dir()]
    return found


def _selections(layout: RunLayout) -> list[SelectionInfo]:
    found = []
    for arm in layout.arms():
        diagnostics = arm.select / "diagnostics.json"
        data = read_json(diagnostics) if diagnostics.is_file() else {}
        if "composition" not in data:
            continue
        manifest = finished_manifest(arm.select)
        settings = manifest.get("settings", {})
        found.append(SelectionInfo(label=arm.root.name, method=settings.get("method", "?"),
                                   budget=str(settings.get("budget", "?")), seed=int(manifest.get("seed") or 0),
                                   path=arm.select, composition=data["composition"],
                                   pool_composition=data.get("pool_composition", {}),
                                   influence=data.get("influence")))
    return sorted(found, key=lambda s: (budget_key(s.budget), s.method == "full", s.method, s.seed, s.label))


def budget_key(budget: str) -> tuple[int, float, str]:
    """Sort budgets as a person would: fractions by size, then token totals, counts, then "all"."""
    text = budget.strip()
    for rank, suffix in enumerate(("%", "tok")):
        if text.endswith(suffix):
            try:
                return rank, float(text[: -len(suffix)]), text
            except ValueError:
                break
    try:
        return 2, float(text), text
    except ValueError:
        return 3, 0.0, text


def _read_results(layout: RunLayout, found: RunContents) -> None:
    """experiments.json (several seeds) if there is one, else results.json (demo or run config)."""
    if layout.experiments_json.is_file():
        data = read_json(layout.experiments_json)
        found.results = {str(b): {m: list(rows) for m, rows in per.items()} for b, per in data.get("runs", {}).items()}
        found.base_row, found.results_source = data.get("base"), layout.experiments_json
    elif layout.results_json.is_file():
        found.results, found.base_row = results_from_json(read_json(layout.results_json))
        found.results_source = layout.results_json


def results_from_json(data: dict) -> tuple[dict[str, dict[str, list[dict]]], dict | None]:
    """A run's {"settings", "base", "arms": {label: {"summary": row}}}; also the older demo
    {"settings", "rows": {label: row}} and run {label: {"summary": row}} files."""
    settings = data.get("settings", {})
    if isinstance(data.get("arms"), dict):
        rows = {label: entry.get("summary") for label, entry in data["arms"].items()}
        base = data.get("base")
        budgets = [str(b) for b in settings.get("budgets", [])] or ["?"]
    else:
        rows = data["rows"] if isinstance(data.get("rows"), dict) else {
            label: entry.get("summary") for label, entry in data.items() if isinstance(entry, dict)}
        base = rows.pop("base (no tuning)", None)
        budgets = [str(settings.get("budget", "?"))]
    out: dict[str, dict[str, list[dict]]] = {}
    for label, row in rows.items():
        if not row or "scores" not in row:
            continue  # a run without tests has no scores to show
        method, _, rest = label.partition(" @ ")
        budget, _, by = rest.partition(" (by ")
        method += f" (by {by}" if by else ""
        for each in ([budget] if budget else budgets):  # the whole pool is every budget's reference
            out.setdefault(each, {}).setdefault(method, []).append(row)
    return out, base


# --------------------------------------------------------------------------------------------
# Data derived from the artifacts (what the plots draw)

# Filling in one selection's diagnostics reads the whole matrix (statistics, then its rows); past
# this many cells the report leaves selections made without the matrix unfilled.
MAX_DIAGNOSTIC_CELLS = 50_000_000


def influence_distributions(folder: Path, block_rows: int = 65536) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each pool example's max influence over every validation task's columns: (raw, normalised).

    Normalised is BIDS's column standardisation (``influence.diagnostics.column_statistics``), over
    the scorable rows: excluded rows (no response token, hence no feature) are left out of the
    statistics and of the distributions. Streams row blocks, so a memory-mapped matrix of any size works.
    """
    matrix = AttributionMatrix.load(folder)
    scores = matrix.scores
    tasks = sorted({str(t) for t in matrix.tasks})
    cols = {t: np.array([j for j, c in enumerate(matrix.tasks) if str(c) == t]) for t in tasks}
    excluded = set(matrix.excluded)
    keep = np.array([row not in excluded for row in matrix.rows])
    mean, std = column_statistics(scores, keep, block_rows)
    std = np.where(std > 0, std, 1.0)
    raw: dict[str, list] = {t: [] for t in tasks}
    normalised: dict[str, list] = {t: [] for t in tasks}
    for start in range(0, scores.shape[0], block_rows):
        block = np.asarray(scores[start:start + block_rows], dtype=np.float64)[keep[start:start + block_rows]]
        scaled = (block - mean) / std
        for task, c in cols.items():
            raw[task].append(block[:, c].max(axis=1))
            normalised[task].append(scaled[:, c].max(axis=1))
    return ({t: np.concatenate(v) for t, v in raw.items()}, {t: np.concatenate(v) for t, v in normalised.items()})


def fill_influence(selections: list[SelectionInfo], folder: Path) -> list[str]:
    """Give selections made without the matrix (random, full, lp-*) AID and THI from it, so the
    influence-based ones have references. Returns the names of those filled in."""
    missing = [s for s in selections if s.influence is None]
    if not missing:
        return []
    matrix = AttributionMatrix.load(folder)
    if matrix.scores.size > MAX_DIAGNOSTIC_CELLS:
        return []
    rows = set(matrix.rows)
    filled = []
    for selection in missing:
        ids = selection.ids()
        if ids and all(i in rows for i in ids):  # the same pool the matrix scores
            selection.influence = influence_diagnostics(matrix, ids)
            filled.append(selection.name)
    return filled


def learning_percentage_data(loss_dir: Path, selections: list[SelectionInfo]) -> dict[str, Any]:
    """LP of the pool from one loss-trajectory folder, with the LP of each lp-* selection's examples."""
    trajectories = LossTrajectories.load(loss_dir)
    variant = "lp1" if trajectories.epochs >= 2 else "lp_app"
    lps = learning_percentages(trajectories, variant)
    value_of = dict(zip(lps.ids, lps.values))
    overlays = {}
    for selection in first_seed(s for s in selections if s.method.startswith("lp-")):
        ids = selection.ids()
        if ids and all(i in value_of for i in ids):
            overlays[selection.name] = np.array([value_of[i] for i in ids])
    return {"lp": lps.values[lps.status == LEARNED], "overlays": overlays, "losses": trajectories.losses,
            "variant": variant, "counts": lps.counts(), "epochs": trajectories.epochs}


def first_seed(selections) -> list[SelectionInfo]:
    """One selection per (method, budget): the lowest seed's (deterministic methods repeat)."""
    chosen: dict[tuple[str, str], SelectionInfo] = {}
    for selection in selections:
        key = (selection.method, selection.budget)
        if key not in chosen or selection.seed < chosen[key].seed:
            chosen[key] = selection
    return list(chosen.values())
