"""Text tables of results: method x capability, with macro-average, worst capability and spread.

Rendered as Markdown so the same text prints in a terminal and reads in docs/RESULTS.md.
"""
from __future__ import annotations

import statistics


def capability_table(rows: dict[str, dict], digits: int = 1) -> str:
    """``rows`` maps a method to {"scores": {capability: accuracy}, "summary": {...}} (accuracy in [0, 1])."""
    capabilities = sorted({c for row in rows.values() for c in row["scores"]})
    header = ["method", *capabilities, "macro", "worst", "spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, row in rows.items():
        summary = row["summary"]
        cells = [method]
        cells += [_pct(row["scores"].get(c), digits) for c in capabilities]
        cells += [_pct(summary["macro"], digits), _pct(summary["worst"], digits), _pct(summary["spread"], digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_spread_table(runs: dict[str, list[dict]], digits: int = 1) -> str:
    """Like ``capability_table`` over several seeds per method: each cell is mean ± std over seeds."""
    capabilities = sorted({c for seeds in runs.values() for r in seeds for c in r["scores"]})
    header = ["method", *capabilities, "macro", "worst", "spread", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, seeds in runs.items():
        cells = [method]
        cells += [_mean_std([r["scores"][c] for r in seeds if c in r["scores"]], digits) for c in capabilities]
        cells += [_mean_std([r["summary"][k] for r in seeds], digits) for k in ("macro", "worst", "spread")]
        cells.append(str(len(seeds)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.{digits}f} ± {100 * std:.{digits}f}"
