"""Any selector over any representation: the grid of targeted selection.

Targeted selection makes two choices (Harvard-DCML 2026, "A Critical Look at Targeted Instruction
Selection", arXiv 2602.14696): the representation that scores a pool example against the target's
validation examples (``select/representations.py``), and the selector that turns that similarity
matrix S into a ranking. Here every selector reads only S, so any pair runs:

| selector      | rule on S (N pool rows x V validation columns, each column tagged with its task)        |
|---------------|------------------------------------------------------------------------------------------|
| less          | LESS task-max: each task's mean over its columns, max over tasks, top B                  |
| bids          | BIDS: columns standardised over the pool, iterative pick of the least-represented column  |
| rds+          | RDS+: each task's max over its columns, the tasks take turns                             |
| round-robin   | the validation examples take turns (tasks interleaved), each taking its nearest untaken  |
| doubly-greedy | each pool row's max over the columns, top B                                              |
| uot           | mass each pool row receives in the semi-relaxed unbalanced transport from the validation |
| knn-uniform   | mass each pool row receives when each validation example spreads 1/V over its K nearest  |

A method is named ``SELECTOR:REPRESENTATION`` (``select/method_names.py``); the papers' pairs keep
their names (``less``, ``bids``, ``rds+``) and their own selectors, so their results do not change.
``grid_methods`` lists the pairs a benchmark runs.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError
from ..method_names import GRID_SELECTORS, PAPER_REPRESENTATION, REPRESENTATIONS, method_name, split_method
from .base import BaseSelector, Ranking, SelectionContext
from .bids import BidsSelector, bids_ranking
from .doubly_greedy import doubly_greedy_ranking
from .less import LessSelector, top_rows
from .knn_uniform import knn_uniform_ranking
from .rds_plus import task_max, task_round_robin
from .representations import REPRESENTATION_AXIS
from .round_robin import round_robin_ranking
from .uot import uot_ranking

# rule(S, ids, columns, options, limit) -> Ranking
Rule = Callable[[np.ndarray, list, list, dict, int], Ranking]


def _less(scores, ids, columns, options, limit):
    return top_rows(LessSelector().score(scores, columns, options), ids, limit)


def _rds_plus(scores, ids, columns, options, limit):
    per_task, tasks = task_max(scores, [str(c.get("task")) for c in columns])
    return task_round_robin(per_task, tasks, ids, limit)


RULES: dict[str, tuple[Rule, str]] = {
    "less": (_less, "LESS task-max: each target task's mean similarity, max over tasks, top B"),
    "bids": (bids_ranking, "BIDS: columns standardised over the pool, iteratively the least represented column's best"),
    "rds+": (_rds_plus, "RDS+: each target task's max similarity, the tasks take turns"),
    "round-robin": (round_robin_ranking,
                    "validation examples take turns (tasks interleaved), each taking its most similar untaken"),
    "doubly-greedy": (doubly_greedy_ranking, "each pool example's max similarity over the validation examples, top B"),
    "uot": (uot_ranking, "mass each pool example receives in unbalanced optimal transport from the validation set"),
    "knn-uniform": (knn_uniform_ranking, "TSDS's KNN-Uniform: each validation example's mass spread evenly over "
                    "its K nearest pool examples"),
}
assert tuple(RULES) == GRID_SELECTORS
# A grid selector's check of the validation set, run before any compute: BIDS's equal sizes per task.
VALIDATION_CHECKS: dict[str, Callable[[list, dict], None]] = {"bids": BidsSelector.check_validation}


class GridSelector(BaseSelector):
    """One selector's rule over one representation's similarity matrix: ``selector`` names a rule
    of ``RULES``, ``representation`` an entry of ``REPRESENTATION_AXIS`` (both checked by
    ``grid_selector``, which builds these)."""

    def __init__(self, selector: str, representation: str):
        self.selector, self.representation = selector, REPRESENTATION_AXIS[representation]
        self.rule, rule_text = RULES[selector]
        self.name = method_name(selector, representation)
        self.needs = (self.representation.need,)
        self.description = f"{rule_text}; over {self.representation.description}"

    def check_validation(self, tasks: list[str], options: dict) -> None:
        """The selector's own check of the validation tasks (``VALIDATION_CHECKS``), if it has one."""
        check = VALIDATION_CHECKS.get(self.selector)
        if check is not None:
            check(tasks, options)

    def encoders(self, config: RunConfig) -> dict[str, str]:
        """The representation's local encoder folder, when it loads one and ``config`` sets it
        ({"embed_encoder": folder} for embed)."""
        setting = self.representation.encoder
        folder = getattr(config, setting) if setting else ""
        return {setting: folder} if folder else {}

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """The rule's ranking of the representation's S, its diagnostics naming both axes."""
        similarity = self.representation.similarity(selection)
        ranking = self.rule(similarity.scores, similarity.ids, similarity.columns, selection.options, limit)
        ranking.diagnostics.update(selector=self.selector, representation=self.representation.name)
        return ranking


def grid_selector(name: str) -> GridSelector:
    """The GridSelector a grid ``name`` (``bids:rds+``) means; a grid selector alone takes its
    paper's representation, and one without a paper pair is refused (``ConfigError``) naming the
    choices."""
    selector, representation = split_method(name)
    if selector not in GRID_SELECTORS:
        raise ConfigError(f"unknown selector {selector!r} in {name!r}; the grid selectors are "
                          f"{', '.join(GRID_SELECTORS)}")
    if representation is None:
        representation = PAPER_REPRESENTATION.get(selector)
        if representation is None:
            choices = ", ".join(f"{selector}:{r}" for r in REPRESENTATIONS)
            raise ConfigError(f"selector {selector!r} needs a representation: name it as {choices} "
                              "(or set representation in the run config, --representation on the command line)")
    method_name(selector, representation)  # refuses an unknown representation by name
    return GridSelector(selector, representation)


def grid_methods(representations=REPRESENTATIONS, selectors=GRID_SELECTORS) -> list[str]:
    """Every (selector, representation) pair of ``selectors`` and ``representations`` (names) as a
    method name, representation by representation; the papers' pairs under their own names
    (``less``, ``bids``, ``rds+``). Returns the names in that order."""
    return [method_name(s, r) for r in representations for s in selectors]
