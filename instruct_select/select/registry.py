"""The selection methods by name. A new method: one file defining its selector, one line below.

The methods do not import this module, so the registry sits on top of them with no cycle.
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Selector
from .bids import BidsSelector
from .ifd import IfdSelector
from .influence import InstanceMaxSelector, LessSelector, NormalizedSelector, SumSelector, TaskBalancedSelector
from .learning_percentage import LpEasySelector, LpHardSelector, LpRandomSelector
from .rds import RdsSelector
from .rds_plus import RdsPlusSelector
from .simple import FullSelector, RandomSelector

SELECTORS: tuple[type, ...] = (
    RandomSelector, FullSelector,
    LessSelector, BidsSelector, InstanceMaxSelector, SumSelector, NormalizedSelector, TaskBalancedSelector,
    RdsSelector, RdsPlusSelector, IfdSelector,
    LpHardSelector, LpEasySelector, LpRandomSelector,
)
REGISTRY: dict[str, Selector] = {cls.name: cls() for cls in sorted(SELECTORS, key=lambda c: c.name)}


def get_selector(name: str) -> Selector:
    if name not in REGISTRY:
        raise ConfigError(f"unknown selection method {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def available_selectors() -> dict[str, Selector]:
    return dict(REGISTRY)
