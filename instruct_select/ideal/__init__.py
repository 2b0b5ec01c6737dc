"""IDEAL (Ming et al. 2025): gradient-based equilibrium of domain volumes in a training mixture.

Each round trains on the current mixture, measures every domain's influence on a reference loss
(I_j = −∇L_refᵀ H⁻¹ ∇L_{D_j}, H from K-FAC / EK-FAC over chosen layers), and resizes the domains
by n_j(1 + β_j), β = −m·I/max|I|. This package holds the method's parts: ``domains`` (labels,
reference set), ``kfac`` (factors, eigenbases, inverse products), ``influence`` (domain
influences), ``update`` (β, volumes, resampling) and ``settings``. The rounds run in
``instruct_select.run.ideal_rounds`` through the shared loop and ``producers.domain_influence``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"IdealPaths": "settings", "IdealSettings": "settings", "load_ideal_config": "settings"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Imported on first use, so reading a recipe (load_ideal_config) does not wait for torch.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'instruct_select.ideal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
