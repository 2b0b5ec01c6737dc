"""Running a selector under a budget, and writing the selection as users want it.

A selection folder holds the chosen records in the input's own format (ready for TRL,
LLaMA-Factory or open-instruct), ``selection.tsv`` (rank, id, task, score), ``diagnostics.json``
(per-task composition and whatever the method reports) and the stage manifest.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import atomic_write_json, atomic_write_text
from ..budget import Budget
from ..data.example import Example
from ..data.writing import write_records
from ..errors import ConfigError
from ..influence.diagnostics import influence_diagnostics
from .base import SelectionContext
from .registry import get_selector


@dataclass
class Selection:
    """A selection: the ``method``, ``budget`` (as given) and ``seed`` that made it, the selected
    ``ids`` in rank order, their ``scores`` (None for an unscored method) and the ``diagnostics``."""

    method: str
    budget: str
    seed: int
    ids: list[str]
    scores: list[float] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def run_selector(method: str, selection: SelectionContext | Sequence[Example], budget: Budget | str, *,
                 token_length: dict[str, int] | None = None) -> Selection:
    """Rank a pool with ``method`` and keep what ``budget`` allows.

    ``method``: a selector name (``registry.get_selector``; a grid pair as ``bids:rds+``, see
    ``method_names.with_representation``); ``selection``: what the selector reads (the pool, the
    seed, each need's value and the selection options), or the pool's Examples alone (seed 0, no
    artifacts, no options); ``budget``: a ``Budget`` or its text ("N" examples, "P%" of the pool,
    "Nt" tokens); ``token_length``: each example's rendered token count by id (required for a
    token budget). Returns the Selection: the kept ids in rank order, their scores, the
    composition and the method's diagnostics. A method that ignores the budget (``full``) keeps
    its whole ranking."""
    budget = budget if isinstance(budget, Budget) else Budget.parse(budget)
    selector = get_selector(method)
    if not isinstance(selection, SelectionContext):
        selection = SelectionContext(pool=list(selection or []))
    pool = selection.pool
    if not pool:
        raise ConfigError("the pool is empty: nothing to select from")
    if budget.kind == "tokens" and token_length is None:
        raise ConfigError("a token budget needs token counts: run selection through the pipeline or pass token_length")
    if selector.ignores_budget:
        limit = len(pool)
    else:
        lengths = [token_length[e.id] for e in pool] if token_length else None
        limit = budget.max_count(len(pool), lengths)
    ranking = selector.rank(selection, limit)
    ids = ranking.ids if selector.ignores_budget else budget.take(ranking.ids, len(pool), token_length)
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"selector {method} returned duplicate ids")  # a bug, not a user error
    scores = ranking.scores[: len(ids)] if ranking.scores is not None else None
    task_of = {e.id: e.task for e in pool}
    diagnostics = {"composition": dict(sorted(Counter(str(task_of[i]) for i in ids).items())),
                   "pool_composition": dict(sorted(Counter(str(e.task) for e in pool).items())),
                   **ranking.diagnostics}
    if "attribution" in selection.artifacts:
        diagnostics["influence"] = influence_diagnostics(selection.artifacts["attribution"], ids)
    return Selection(method, str(budget), selection.seed, ids, scores, diagnostics)


def write_selection(selection: Selection, loaded, out_dir: str | Path) -> dict:
    """Write the selected records in the input's format plus the id/score table and diagnostics.

    ``selection``: what ``run_selector`` chose; ``loaded``: the pool it chose from (its records are
    written back in its own format); ``out_dir``: the selection folder. Returns the manifest's
    outputs: how many were selected, the data file's name and the per-task composition."""
    out_dir = Path(out_dir)
    task_of = {e.id: e.task for e in loaded.examples}
    rows = ["rank\tid\ttask\tscore"]
    for rank, id_ in enumerate(selection.ids, start=1):
        score = "" if selection.scores is None else f"{selection.scores[rank - 1]:.6g}"
        rows.append(f"{rank}\t{id_}\t{task_of.get(id_)}\t{score}")
    # The data first and the id table last (each written to a temporary name, then renamed): a
    # failed write (a full disk) never leaves a selection.tsv, which readers take as the selection.
    data_path = out_dir / f"selected{_suffix(loaded)}"
    write_records(loaded, selection.ids, data_path)
    atomic_write_json(out_dir / "diagnostics.json", selection.diagnostics)
    atomic_write_text(out_dir / "selection.tsv", "\n".join(rows) + "\n")
    return {"n_selected": len(selection.ids), "data": data_path.name,
            "composition": selection.diagnostics["composition"]}


def _suffix(loaded) -> str:
    """The written data's name says what it is: a file's extension, or none for a folder (a
    datasets folder, or a pool folder written back file by file)."""
    return {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "hf": "", "dir": ""}[loaded.container]


def read_selected_ids(selection_dir: str | Path) -> list[str]:
    """The ids of the selection written in ``selection_dir`` (its ``selection.tsv``), in rank order."""
    lines = (Path(selection_dir) / "selection.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[1] for line in lines if line]
