"""instruct_select: choose instruction-tuning data for strong and balanced capabilities.

The handful of names a user imports; everything else is internal. A run is a ``RunConfig``
(model, pool, validation, tests, methods, budgets and each stage's settings) and ``run_config``
runs it; ``load_config`` reads one from YAML with ``key=value`` overrides. The lab demo
(``build_lab``, ``run_demo``) runs the same pipeline on a CPU.

    from instruct_select import load_config, run_config
    results = run_config(load_config("configs/lab.yaml", ["budgets=[10%]"]))
    print(results.rows())

Names are imported on first use, so ``instruct-select --help`` does not wait for torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "config", "load_config": "config", "run_config": "run.pipeline", "RunResults": "run.pipeline",
    "DemoSettings": "run.demo", "run_demo": "run.demo", "LabSettings": "lab.build", "build_lab": "lab.build",
    "load_examples": "data.loading", "available_selectors": "select.registry",
    "InstructSelectError": "errors", "ConfigError": "errors", "InputError": "errors",
    "ArtifactMismatchError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'instruct_select' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
