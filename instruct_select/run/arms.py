"""The one select → train → evaluate loop. ``run``, the demo, the experiments and IDEAL's rounds
all reach a trained, evaluated model through ``run_arm`` / ``train_and_evaluate``.

An arm (``layout.Arm``) is one method at one budget and seed; its folders come from the run
layout, its artifacts from the producers. The model is fine-tuned with the run's training
settings seeded with the arm's seed, and evaluated when the run has tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import Artifact
from ..config import RunConfig
from .context import RunContext
from ..data.loading import LoadedData
from ..layout import Arm, ArmFolders, RunLayout, TrainFolders
from ..select.registry import get_selector
from .stages import TokenCounting, evaluate_stage, select_stage, train_stage


@dataclass
class ArmResult:
    """Paths as strings (JSON-ready); ``summary`` is the evaluation's outputs ({"summary", "scores"})."""

    selection: str | None = None
    model: str | None = None
    summary: dict | None = None


def run_arm(context: RunContext, config: RunConfig, layout: RunLayout, arm: Arm,
            artifacts: dict[str, Artifact]) -> ArmResult:
    """Select the arm's examples, then (``config.finetune``) fine-tune on them and evaluate."""
    needs = get_selector(arm.method).needs
    folders = layout.arm(arm)
    options = {**config.selection_options,
               **(config.learning_percentage.options() if "loss_trajectories" in needs else {})}
    selection = select_stage(context, arm.method, arm.budget, folders.select, seed=arm.seed, options=options,
                             artifacts={need: artifacts[need] for need in needs},
                             tokens=TokenCounting(config.model, config.train.max_length))
    result = ArmResult(selection=str(selection.path))
    if config.finetune:
        model, result.summary = train_and_evaluate(context, config, folders, seed=arm.seed, selection_dir=selection.path)
        result.model = str(model)
    return result


def train_and_evaluate(context: RunContext, config: RunConfig, folders: ArmFolders, *, seed: int,
                       selection_dir: Path | None = None, data: LoadedData | None = None) -> tuple[Path, dict | None]:
    """Fine-tune ``config.model`` (on a selection of the pool, or on ``data``) and evaluate it when
    the run has tests; returns the model folder and the evaluation's outputs (or None)."""
    train = dataclasses.replace(config.train, seed=seed)
    trained = train_stage(context, config.model, folders.train, train, selection_dir=selection_dir, data=data)
    model = TrainFolders(trained.path).model
    if not config.tests:
        return model, None
    return model, evaluate_stage(context, model, config.tests, folders.evaluation, config.eval).manifest["outputs"]


def evaluate_base(context: RunContext, config: RunConfig, layout: RunLayout) -> dict:
    """The untuned model's scores: the row every fine-tuning is compared with."""
    return evaluate_stage(context, config.model, config.tests, layout.base.evaluation, config.eval).manifest["outputs"]
