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
from ..data.loading import LoadedData
from ..layout import Arm, ArmFolders, RunLayout, TrainFolders
from ..select.registry import get_selector
from .context import RunContext
from .stages import MethodInputs, TokenCounting, evaluate_stage, select_stage, train_stage


@dataclass
class ArmResult:
    """One arm's outcome, paths as strings (JSON-ready): ``selection``, its selection folder;
    ``model``, the fine-tuned model's folder (None unless fine-tuned); ``summary``, the evaluation's
    outputs ({"summary", "scores", ...}; None without tests)."""

    selection: str | None = None
    model: str | None = None
    summary: dict | None = None


def run_arm(context: RunContext, config: RunConfig, layout: RunLayout, arm: Arm,
            artifacts: dict[str, Artifact]) -> ArmResult:
    """Select the arm's examples, then (``config.finetune``) fine-tune on them and evaluate.

    ``context``: the command's shared state; ``config``: the run; ``layout``: its folder; ``arm``:
    the method, budget and seed; ``artifacts``: every need of the run's methods by name (the arm's
    method reads its own ``Selector.needs``; its own settings give its ``Selector.options``).
    Returns the arm's selection folder, and its model folder and evaluation when fine-tuned."""
    selector = get_selector(arm.method)
    folders = layout.arm(arm)
    options = {**config.selection_options, **selector.options(config)}
    given = MethodInputs(artifacts={need: artifacts[need] for need in selector.needs}, options=options,
                         tokens=TokenCounting(config.model, config.train.max_length))
    selection = select_stage(context, arm.method, arm.budget, folders.select, seed=arm.seed, given=given)
    result = ArmResult(selection=str(selection.path))
    if config.finetune:
        model, result.summary = train_and_evaluate(context, config, folders, seed=arm.seed, selection_dir=selection.path)
        result.model = str(model)
    return result


def train_and_evaluate(context: RunContext, config: RunConfig, folders: ArmFolders, *, seed: int,
                       selection_dir: Path | None = None, data: LoadedData | None = None) -> tuple[Path, dict | None]:
    """Fine-tune ``config.model`` and evaluate it when the run has tests.

    ``context``: the command's shared state (its pool is the training data unless ``data``);
    ``config``: the run (its ``train`` and ``eval`` settings, ``tests``); ``folders``: where the
    training and the evaluation go; ``seed``: the training seed; ``selection_dir``: a selection
    folder restricting the pool, or None for all of it; ``data``: other training data than the
    pool. Returns the model folder and the evaluation's outputs (None without tests)."""
    train = dataclasses.replace(config.train, seed=seed)
    trained = train_stage(context, config.model, folders.train, train, selection_dir=selection_dir, data=data)
    model = TrainFolders(trained.path).model
    if not config.tests:
        return model, None
    return model, evaluate_stage(context, model, config.tests, folders.evaluation, config.eval).manifest["outputs"]


def evaluate_base(context: RunContext, config: RunConfig, layout: RunLayout) -> dict:
    """The untuned ``config.model`` evaluated on ``config.tests`` into ``layout.base``: the row every
    fine-tuning is compared with. ``context``: the command's shared state. Returns the evaluation's
    outputs ({"summary", "scores", ...})."""
    return evaluate_stage(context, config.model, config.tests, layout.base.evaluation, config.eval).manifest["outputs"]
