"""The selection methods by name. A new method: one file defining its selector, one line below.
A new selector or representation of the grid (any selector over any representation): one rule in
``grid.RULES`` or one entry in ``representations.REPRESENTATION_AXIS``, and its name in
``method_names``.

The methods do not import this module, so the registry sits on top of them with no cycle.
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Selector
from .bids import BidsSelector
from .grid import grid_methods, grid_selector
from .ifd import IfdSelector
from .less import InstanceMaxSelector, LessSelector, NormalizedSelector, SumSelector, TaskBalancedSelector
from .learning_percentage import LpEasySelector, LpHardSelector, LpRandomSelector
from ..method_names import GRID_SELECTORS, REPRESENTATIONS, method_name, split_method
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
    """The selector of ``name``: a registered method, or a grid pair ``SELECTOR:REPRESENTATION``
    (``grid``); a paper's pair written on the grid (``bids:less``) is the paper's own method. An
    unknown name is refused (``ConfigError``) listing the known ones."""
    if name in REGISTRY:
        return REGISTRY[name]
    selector, representation = split_method(name)
    if representation is None and selector not in GRID_SELECTORS:
        raise ConfigError(f"unknown selection method {name!r}; known: {', '.join(REGISTRY)}, and the grid "
                          f"SELECTOR:REPRESENTATION with selectors {', '.join(GRID_SELECTORS)} and "
                          f"representations {', '.join(REPRESENTATIONS)}")
    if representation is not None and method_name(name) in REGISTRY:
        return REGISTRY[method_name(name)]
    return grid_selector(name)


def available_selectors() -> dict[str, Selector]:
    """{name: selector} of the named methods (each runs as named), by name; the grid's other pairs
    are ``grid_selectors``."""
    return dict(REGISTRY)


def grid_selectors() -> dict[str, Selector]:
    """{name: selector} of every grid pair that is not a named method (``bids:rds+``, ``uot:less``, ...)."""
    return {name: grid_selector(name) for name in grid_methods() if name not in REGISTRY}
