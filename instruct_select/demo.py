"""The lab demo: select with each method, fine-tune, evaluate every capability, print the table.

Runs entirely on a CPU: builds the capability lab (cached), evaluates the untuned base model,
computes what the methods need (warmup, gradient features, attribution matrix), then for each
method selects at the budget, fine-tunes the lab model with LoRA on the selection and evaluates
it. The method x capability table (with macro-average, worst capability and spread) is printed
and written to ``RUN/results.md`` and ``RUN/results.json``. Every stage is cached in the run
directory, so a second run only prints.

Run layout: ``RUN/base/``, ``RUN/influence/`` (warmup, features, scores; shared by every method,
budget and seed; with ``learning_percentage/``, where the small lab model's loss trajectories pick
the hard examples for the large one) and ``RUN/<method>-<budget>-seed<seed>/`` (select, train,
evaluation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import atomic_write_json, atomic_write_text
from .config import EvalSettings, InfluenceSettings, LPSettings, TrainSettings, to_dict
from .lab.build import LabPaths, LabSettings, build_lab
from .lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings
from .pipeline import evaluate_stage, prepare_artifacts, select_stage, train_stage
from .report.tables import capability_table
from .select.base import get_selector
from .select.budget import Budget

DEFAULT_METHODS = ["random", "less", "bids", "lp-hard", "full"]


@dataclass
class DemoSettings:
    budget: str = "15%"
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    model_size: str = "large"
    lp_selection_size: str = "small"  # learning percentage: this lab model selects for model_size
    include_base: bool = True
    lab: LabSettings = field(default_factory=LabSettings)
    train: TrainSettings | None = None  # None: the lab preset, seeded with ``seed``
    eval: EvalSettings | None = None
    influence: InfluenceSettings | None = None  # None: the lab preset (seed 0, shared across seeds)

    def resolved(self) -> tuple[TrainSettings, EvalSettings, InfluenceSettings]:
        return (self.train or lab_train_settings(seed=self.seed), self.eval or lab_eval_settings(),
                self.influence or lab_influence_settings(seed=0))


def method_label(method: str, budget: str) -> str:
    return method if method == "full" else f"{method} @ {budget}"


def compare_methods(lab: LabPaths, run_dir: Path, settings: DemoSettings, *, progress: bool = True,
                    log=print) -> dict[str, dict]:
    """Rows of the comparison table: {label: {"scores": {capability: acc}, "summary": {...}}}."""
    train, evaluation, influence = settings.resolved()
    for method in settings.methods:
        get_selector(method)  # unknown names fail before any work
    budget = str(Budget.parse(settings.budget))
    base_model = lab.model(settings.model_size)
    needs = {need for method in settings.methods for need in get_selector(method).needs}
    lp = LPSettings(selection_model=str(lab.model(settings.lp_selection_size)))
    artifacts, fingerprints = prepare_artifacts(needs, lab.pool, lab.validation, base_model, run_dir / "influence",
                                                influence, lp=lp, progress=progress, log=log)
    rows: dict[str, dict] = {}
    if settings.include_base:
        result = evaluate_stage(base_model, lab.test, run_dir / "base" / "evaluation", evaluation,
                                progress=progress, log=log)
        rows["base (no tuning)"] = result.manifest["outputs"]
    for method in settings.methods:
        label = method_label(method, budget)
        folder = run_dir / (f"full-seed{settings.seed}" if method == "full"
                            else f"{method}-{budget.replace('%', 'pct')}-seed{settings.seed}")
        log(f"[demo] {label} (seed {settings.seed})")
        needed = get_selector(method).needs
        selection = select_stage(lab.pool, method, budget, folder / "select", seed=settings.seed, log=log,
                                 artifacts={k: artifacts[k] for k in needed},
                                 artifact_fingerprints={k: fingerprints[k] for k in needed})
        trained = train_stage(base_model, lab.pool, folder / "train", train, selection_dir=selection.path,
                              progress=progress, log=log)
        result = evaluate_stage(trained.path / "model", lab.test, folder / "evaluation", evaluation,
                                progress=progress, log=log)
        rows[label] = result.manifest["outputs"]
    return rows


def run_demo(run_dir: str | Path, lab_dir: str | Path, settings: DemoSettings | None = None, *,
             progress: bool = True, log=print) -> dict[str, dict]:
    settings = settings or DemoSettings()
    start = time.time()
    run_dir = Path(run_dir)
    lab = build_lab(lab_dir, settings.lab, progress=progress, log=log)
    rows = compare_methods(lab, run_dir, settings, progress=progress, log=log)
    table = capability_table(rows)
    header = (f"Lab demo: budget {settings.budget}, seed {settings.seed}, model '{settings.model_size}' "
              f"(lp-* selected by '{settings.lp_selection_size}'). "
              "Accuracy (%) per capability on held-out test sets; macro = mean over capabilities, "
              "worst = lowest capability, spread = standard deviation across capabilities.")
    train, evaluation, influence = settings.resolved()
    atomic_write_text(run_dir / "results.md", f"{header}\n\n{table}\n")
    atomic_write_json(run_dir / "results.json", {
        "settings": {"budget": settings.budget, "seed": settings.seed, "methods": settings.methods,
                     "model_size": settings.model_size, "train": to_dict(train), "eval": to_dict(evaluation),
                     "influence": to_dict(influence)},
        "rows": rows})
    log(f"\n{header}\n\n{table}\n\n(written to {run_dir / 'results.md'}; {time.time() - start:.0f} s)")
    return rows
