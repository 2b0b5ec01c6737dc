"""What every selector shares: the context it reads, the ranking it returns, and the registry.

A selector ranks pool ids (best first) up to a limit; the budget then keeps a prefix of that
ranking, so one mechanism serves counts, fractions and token totals. Most rankings are also
prefix-consistent across budgets (BIDS's first k picks are its selection at budget k); learning
percentage's are not, because its per-cluster quotas are computed from the budget (see its module
docstring), so it ranks for the budget it is given. A selector
declares the artifacts it needs (``needs``), so the pipeline runs only the producers it requires;
``registry`` maps names to selectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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
            raise ConfigError(missing_need(name))
        return self.artifacts[name]


# The needs that ``instruct-select select`` takes ready-made, and its flag for each; ``run`` computes
# every need of its methods.
SELECT_FLAGS = {"attribution": "--scores"}


def missing_need(need: str, method: str | None = None) -> str:
    """Why a selector cannot run without ``need``, and the command that makes it."""
    who = f"--method {method}" if method else "this selector"
    run = (f"`instruct-select run CONFIG` with {method or 'the method'} in its methods "
           "(finetune=false stops after selecting)")
    if need in SELECT_FLAGS:
        return (f"{who} needs influence scores ('{need}'): compute them with {run}, which writes "
                f"RUN/influence/scores; then pass {SELECT_FLAGS[need]} RUN/influence/scores")
    if need == "encoder_embeddings":
        return (f"{who} uses the embed representation ('{need}'), which needs an encoder: select with {run} and "
                "embed_encoder set to a local encoder folder")
    return f"{who} needs the '{need}' artifact, which `select` cannot compute: select with {run}"


@dataclass
class Ranking:
    ids: list[str]
    scores: list[float] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Selector(Protocol):
    name: str
    needs: tuple[str, ...]
    description: str

    def rank(self, selection: SelectionContext, limit: int) -> Ranking: ...
