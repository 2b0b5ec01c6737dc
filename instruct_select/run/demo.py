"""The lab demo: select with each method, fine-tune, evaluate every capability, print the table.

Runs entirely on a CPU: builds the capability lab (cached), then runs the lab as a ``RunConfig``
(the lab presets' settings) through the same pipeline as ``instruct-select run``: the untuned
base model is evaluated, the methods' artifacts are produced (warmup, gradient features,
attribution matrix; learning percentage's small lab model picks the hard examples for the large
one), and each method's selection is fine-tuned and evaluated. The method × capability table
(macro-average, worst capability, spread) is printed and written to ``RUN/results.md`` and
``RUN/results.json``. Every stage is cached in the run directory, so a second run only prints.
The command line prints the table (``demo_table``); each stage logs its start and end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import EvalSettings, InfluenceSettings, LPSettings, RunConfig, TrainSettings
from ..lab.build import LabPaths, LabSettings, build_lab
from ..lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings
from ..layout import RunLayout
from .pipeline import run_config
from ..report.tables import results_tables

DEFAULT_METHODS = ["random", "less", "bids", "lp-hard", "full"]


@dataclass
class DemoSettings:
    """What the lab demo runs: ``budget`` ("N" examples, "P%" of the pool, "Nt" tokens) and
    ``seed`` of every selection and fine-tuning; ``methods`` (selector names); ``model_size``, the
    lab model fine-tuned ("small" or "large"); ``lp_selection_size``, the lab model whose learning
    percentage selects for it; ``include_base``, also evaluate the untuned model; ``lab``, the lab
    to build; ``train``, ``eval``, ``influence``: the stages' settings (None: the lab presets')."""

    budget: str = "15%"
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    model_size: str = "large"
    lp_selection_size: str = "small"  # learning percentage: this lab model selects for model_size
    include_base: bool = True
    lab: LabSettings = field(default_factory=LabSettings)
    train: TrainSettings | None = None  # None: the lab preset (seeded with ``seed`` by the loop)
    eval: EvalSettings | None = None
    influence: InfluenceSettings | None = None  # None: the lab preset (seed 0, shared across seeds)


def demo_config(lab: LabPaths, run_dir: str | Path, settings: DemoSettings) -> RunConfig:
    """The demo as a run config writing into ``run_dir``: the data and models of the built lab
    ``lab`` (``build_lab``'s paths) with ``settings`` (the lab presets' stage settings where they
    give none)."""
    selector = lab.model(settings.lp_selection_size)
    return RunConfig(
        model=str(lab.model(settings.model_size)), pool=str(lab.pool), validation=str(lab.validation),
        tests=str(lab.test), run_dir=str(run_dir), methods=list(settings.methods), budgets=[settings.budget],
        seed=settings.seed, dtype="float32", device="auto",
        influence=settings.influence or lab_influence_settings(seed=0),
        learning_percentage=LPSettings(selection_model=str(selector),
                                       selection_train=lab_train_settings(seed=0, epochs=3)),
        train=settings.train or lab_train_settings(seed=settings.seed), eval=settings.eval or lab_eval_settings(),
        evaluate_base=settings.include_base)


def run_demo(run_dir: str | Path, lab_dir: str | Path, settings: DemoSettings | None = None) -> dict[str, dict]:
    """Build the lab in ``lab_dir`` (cached) and run the demo config into ``run_dir`` with
    ``settings`` (default ``DemoSettings()``). Returns the table's rows {label: {"scores",
    "summary"}}, scores being accuracies in [0, 1] per capability."""
    settings = settings or DemoSettings()
    lab = build_lab(lab_dir, settings.lab)
    return run_config(demo_config(lab, run_dir, settings)).rows()


def demo_table(run_dir: str | Path, settings: DemoSettings, rows: dict[str, dict], seconds: float) -> str:
    """The demo's table as the command prints it: a header saying what was run, the method ×
    capability table of ``rows`` (``run_demo``'s), where it was written and the ``seconds`` taken."""
    header = (f"Lab demo: budget {settings.budget}, seed {settings.seed}, model '{settings.model_size}' "
              f"(lp-* selected by '{settings.lp_selection_size}'). "
              "Accuracy (%) per capability on held-out test sets; macro = mean over capabilities, "
              "worst = lowest capability, spread = standard deviation across capabilities.")
    return (f"\n{header}\n\n{results_tables(rows)}\n\n(written to {RunLayout(run_dir).results_md}; "
            f"{seconds:.0f} s)")
