"""instruct_select: choose instruction-tuning data for strong and balanced capabilities.

The handful of names a user imports; each stage is also a subcommand of ``instruct-select``.

    from instruct_select import build_lab, select_stage, train_stage, evaluate_stage, run_demo

Names are imported on first use, so ``instruct-select --help`` does not wait for torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ArtifactMismatchError": "errors", "ConfigError": "errors", "InputError": "errors",
    "InstructSelectError": "errors",
    "EvalSettings": "config", "FeatureSettings": "config", "InfluenceSettings": "config",
    "LoraSettings": "config", "TrainSettings": "config",
    "Example": "data.example", "LoadedData": "data.loading", "load_examples": "data.loading",
    "DemoSettings": "demo", "run_demo": "demo",
    "LabSettings": "lab.build", "build_lab": "lab.build",
    "evaluate_stage": "pipeline", "load_test_sets": "pipeline", "prepare_artifacts": "pipeline",
    "select_stage": "pipeline", "train_stage": "pipeline",
    "available_selectors": "select.base", "Budget": "select.budget",
    "Selection": "select.selection", "run_selector": "select.selection",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'instruct_select' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
