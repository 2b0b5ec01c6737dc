"""Text tables of results: method x capability, with macro-average, worst capability and spread.

Rendered as Markdown so the same text prints in a terminal and reads in docs/RESULTS.md. One
table function serves every metric a result row carries (``METRICS``): accuracy, and the held-out
loss of the reference answers. Rows made before the loss was measured have no loss: their cells
read "-".
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """Where a row keeps a metric and how it reads: ``row[key][capability]`` and
    ``row[summary][macro | worst | spread]``, each value shown as ``scale * value``."""

    key: str
    summary: str
    scale: float
    digits: int
    lower_is_better: bool
    label: str
    caption: str = ""


METRICS = {
    "accuracy": Metric("scores", "summary", 100.0, 1, False, "accuracy (%)"),
    "loss": Metric("loss", "loss_summary", 1.0, 3, True, "held-out loss (nats)",
                   "Held-out loss of the reference answers (token-mean cross-entropy, nats; lower is better, "
                   "worst = highest)"),
}
SUMMARIES = ("macro", "worst", "spread")


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]


def capability_table(rows: dict[str, dict], digits: int | None = None, metric: str = "accuracy") -> str:
    """``rows`` maps a method to {"scores": {capability: accuracy}, "summary": {...}} (accuracy in
    [0, 1]) and, when measured, {"loss": {capability: loss}, "loss_summary": {...}}; ``metric``
    picks which to show ("accuracy" or "loss")."""
    m = get_metric(metric)
    digits = m.digits if digits is None else digits
    capabilities = sorted({c for row in rows.values() for c in row.get(m.key) or {}})
    header = ["method", *capabilities, *SUMMARIES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, row in rows.items():
        values, summary = row.get(m.key) or {}, row.get(m.summary) or {}
        cells = [method]
        cells += [_fmt(values.get(c), m, digits) for c in capabilities]
        cells += [_fmt(summary.get(k), m, digits) for k in SUMMARIES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(([m.caption, ""] if m.caption else []) + lines)


def mean_spread_table(runs: dict[str, list[dict]], digits: int | None = None, metric: str = "accuracy") -> str:
    """Like ``capability_table`` over several seeds per method: each cell is mean ± std over seeds."""
    m = get_metric(metric)
    digits = m.digits if digits is None else digits
    capabilities = sorted({c for seeds in runs.values() for r in seeds for c in r.get(m.key) or {}})
    header = ["method", *capabilities, *SUMMARIES, "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, seeds in runs.items():
        cells = [method]
        cells += [_mean_std([r[m.key][c] for r in seeds if c in (r.get(m.key) or {})], m, digits)
                  for c in capabilities]
        cells += [_mean_std([r[m.summary][k] for r in seeds if k in (r.get(m.summary) or {})], m, digits)
                  for k in SUMMARIES]
        cells.append(str(len(seeds)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(([m.caption, ""] if m.caption else []) + lines)


def _fmt(value: float | None, m: Metric, digits: int) -> str:
    return "-" if value is None else f"{m.scale * value:.{digits}f}"


def _mean_std(values: list[float], m: Metric, digits: int) -> str:
    if not values:
        return "-"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{m.scale * statistics.mean(values):.{digits}f} ± {m.scale * std:.{digits}f}"


def results_tables(rows: dict[str, dict]) -> str:
    """The accuracy table, then the held-out loss table when any row measured it."""
    tables = [capability_table(rows)]
    if any(row.get("loss") for row in rows.values()):
        tables.append(capability_table(rows, metric="loss"))
    return "\n\n".join(tables)


def mean_spread_tables(runs: dict[str, list[dict]]) -> str:
    """``results_tables`` over seeds: mean ± std of accuracy, then of the held-out loss if measured."""
    tables = [mean_spread_table(runs)]
    if any(r.get("loss") for seeds in runs.values() for r in seeds):
        tables.append(mean_spread_table(runs, metric="loss"))
    return "\n\n".join(tables)
