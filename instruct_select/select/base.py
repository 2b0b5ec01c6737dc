"""What every selector shares: the context it reads, the ranking it returns, and the registry.

A selector ranks pool ids (best first) up to a limit; the budget then keeps a prefix of that
ranking. Rankings are prefix-consistent for every selector here (BIDS's first k picks are its
selection at budget k), so one mechanism serves counts, fractions and token totals. A selector
declares the artifacts it needs (``needs``), so the pipeline runs only the stages it requires.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..data.example import Example
from ..errors import ConfigError


@dataclass
class SelectionContext:
    """Everything a selector may read. ``artifacts`` maps a need (e.g. "attribution") to its value."""

    pool: list[Example]
    seed: int = 0
    artifacts: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def need(self, name: str) -> Any:
        if name not in self.artifacts:
            raise ConfigError(f"this selector needs the '{name}' artifact, which was not computed")
        return self.artifacts[name]


@dataclass
class Ranking:
    ids: list[str]
    scores: list[float] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Selector(Protocol):
    name: str
    needs: tuple[str, ...]
    description: str

    def rank(self, ctx: SelectionContext, limit: int) -> Ranking: ...


REGISTRY: dict[str, Selector] = {}


def register(selector_cls: Callable[[], Selector]) -> Callable[[], Selector]:
    """Class decorator: add one instance of the selector to the registry under its name."""
    instance = selector_cls()
    REGISTRY[instance.name] = instance
    return selector_cls


def get_selector(name: str) -> Selector:
    from . import methods  # noqa: F401  (importing the methods fills the registry)

    if name not in REGISTRY:
        raise ConfigError(f"unknown selection method {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available_selectors() -> dict[str, Selector]:
    from . import methods  # noqa: F401

    return dict(sorted(REGISTRY.items()))
