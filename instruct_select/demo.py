"""The lab demo: select with each method, fine-tune, evaluate every capability, print the table.

Runs entirely on a CPU: builds the capability lab (cached), evaluates the untuned base model,
then for each method selects at the budget, fine-tunes the lab model with LoRA on the selection
and evaluates it. The method x capability table (with macro-average, worst capability and spread)
is printed and written to ``RUN/results.md`` and ``RUN/results.json``. Every stage is cached in
the run directory, so a second run only prints.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import atomic_write_json, atomic_write_text
from .config import EvalSettings, InfluenceSettings, TrainSettings, to_dict
from .lab.build import LabSettings, build_lab
from .lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings
from .pipeline import evaluate_stage, prepare_artifacts, select_stage, train_stage
from .select.base import get_selector
from .report.tables import capability_table


@dataclass
class DemoSettings:
    budget: str = "15%"
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: ["random", "less", "bids", "full"])
    model_size: str = "large"
    include_base: bool = True
    lab: LabSettings = field(default_factory=LabSettings)
    train: TrainSettings | None = None  # None: the lab preset
    eval: EvalSettings | None = None
    influence: InfluenceSettings | None = None


def run_demo(run_dir: str | Path, lab_dir: str | Path, settings: DemoSettings | None = None, *,
             progress: bool = True, log=print) -> dict[str, dict]:
    settings = settings or DemoSettings()
    start = time.time()
    run_dir = Path(run_dir)
    train = settings.train or lab_train_settings(seed=settings.seed)
    evaluation = settings.eval or lab_eval_settings()
    lab = build_lab(lab_dir, settings.lab, progress=progress, log=log)
    base_model = lab.model(settings.model_size)
    needs = {need for method in settings.methods for need in get_selector(method).needs}
    influence = settings.influence or lab_influence_settings(seed=settings.seed)
    artifacts, fingerprints = prepare_artifacts(needs, lab.pool, lab.validation, base_model, run_dir, influence,
                                                progress=progress, log=log)
    rows: dict[str, dict] = {}
    if settings.include_base:
        result = evaluate_stage(base_model, lab.test, run_dir / "base" / "evaluation", evaluation,
                                progress=progress, log=log)
        rows["base (no tuning)"] = result.manifest["outputs"]
    for method in settings.methods:
        label = method if method == "full" else f"{method} @ {settings.budget}"
        log(f"[demo] {label}")
        needed = get_selector(method).needs
        selection = select_stage(lab.pool, method, settings.budget, run_dir / f"select-{method}",
                                 seed=settings.seed, log=log,
                                 artifacts={k: artifacts[k] for k in needed},
                                 artifact_fingerprints={k: fingerprints[k] for k in needed})
        trained = train_stage(base_model, lab.pool, run_dir / f"train-{method}", train,
                              selection_dir=selection.path, progress=progress, log=log)
        result = evaluate_stage(trained.path / "model", lab.test, trained.path / "evaluation", evaluation,
                                progress=progress, log=log)
        rows[label] = result.manifest["outputs"]
    table = capability_table(rows)
    elapsed = time.time() - start
    header = (f"Lab demo: budget {settings.budget}, seed {settings.seed}, model '{settings.model_size}'. "
              "Accuracy (%) per capability on held-out test sets; macro = mean over capabilities, "
              "worst = lowest capability, spread = standard deviation across capabilities.")
    atomic_write_text(run_dir / "results.md", f"{header}\n\n{table}\n")
    atomic_write_json(run_dir / "results.json", {"settings": _settings_dict(settings, train, evaluation),
                                                 "rows": rows})
    log(f"\n{header}\n\n{table}\n\n(written to {run_dir / 'results.md'}; {elapsed:.0f} s)")
    return rows


def _settings_dict(settings: DemoSettings, train: TrainSettings, evaluation: EvalSettings) -> dict:
    return {"budget": settings.budget, "seed": settings.seed, "methods": settings.methods,
            "model_size": settings.model_size, "train": to_dict(train), "eval": to_dict(evaluation),
            "influence": to_dict(settings.influence or lab_influence_settings(seed=settings.seed))}
