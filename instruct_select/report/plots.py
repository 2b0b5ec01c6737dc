"""The report's figures, drawn with matplotlib from plain data (no paths, no run-directory logic).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot, so no global backend or
figure state is touched: saving a Figure renders it with Agg. Every figure has a title, axis labels
and a legend; colours are fixed per task and per method across figures, so "math" or "bids" looks
the same everywhere on the page.
"""
from __future__ import annotations

import statistics
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..select.registry import available_selectors

from .tables import SUMMARIES as CAPABILITY_SUMMARIES, get_metric

MAIN_METHODS = ("random", "less", "bids", "full", "task-balanced", "lp-hard", "rds")
TITLE_SIZE = 13


def palette(names: Sequence[str], cmap: str = "tab10") -> dict[str, tuple]:
    """A fixed colour per name (sorted, so the same names always get the same colours)."""
    colours = matplotlib.colormaps[cmap if len(set(names)) <= 10 else "tab20"].colors
    return {name: colours[i % len(colours)] for i, name in enumerate(sorted(set(names)))}


def _registry_order(extra: Sequence[str] = ()) -> list[str]:
    """The most compared methods first, then the rest of the registry, then unknown names."""
    methods = list(MAIN_METHODS) + sorted(set(available_selectors()) - set(MAIN_METHODS))
    return methods + sorted(set(extra) - set(methods))


def method_sort_key(name: str) -> tuple[bool, int, str]:
    """Order "random @ 5%", "bids @ 5%", ... as the registry does; full and the base model last."""
    method = name.split(" @ ")[0]
    order = _registry_order([method])
    return (method == "full" or name.startswith("base"), order.index(method), name)


def method_palette(names: Sequence[str]) -> dict[str, tuple]:
    """A colour per name keyed by its method, the same in every figure and every report
    ("bids @ 10%" and "bids @ 5%" share bids's colour): the registry's methods in a fixed order,
    the most compared first, get tab20's ten strong colours and then its light ones."""
    methods = _registry_order([n.split(" @ ")[0] for n in names])
    tab20 = matplotlib.colormaps["tab20"].colors
    colours = tab20[0::2] + tab20[1::2]
    by_method = {m: colours[i % len(colours)] for i, m in enumerate(methods)}
    return {n: by_method[n.split(" @ ")[0]] for n in names}


def _legend_right(fig: Figure, ax) -> None:
    """The legend beside the axes: above them it collides with titles once it wraps."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", frameon=False, fontsize=9)


def composition_figure(bars: dict[str, dict[str, int]], pool: dict[str, int]) -> Figure:
    """Stacked horizontal bars: each selection's share of every task, the pool's on top."""
    rows = {f"pool (n={sum(pool.values())})": pool} if pool else {}
    rows.update({f"{name} (n={sum(c.values())})": c for name, c in bars.items()})
    tasks = sorted({t for counts in rows.values() for t in counts})
    colours = palette(tasks)
    fig = Figure(figsize=(10, 1.6 + 0.42 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    labels = list(rows)[::-1]  # first row at the top
    left = np.zeros(len(labels))
    for task in tasks:
        share = np.array([100 * rows[r].get(task, 0) / max(1, sum(rows[r].values())) for r in labels])
        ax.barh(labels, share, left=left, color=colours[task], label=task, edgecolor="white", linewidth=0.5)
        for y, (x0, w) in enumerate(zip(left, share)):
            if w >= 6:
                ax.text(x0 + w / 2, y, f"{w:.0f}", ha="center", va="center", fontsize=8, color="white")
        left += share
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the selection (%)")
    ax.set_title("Per-task composition of each selection", fontsize=TITLE_SIZE)
    _legend_right(fig, ax)
    return fig


def influence_diagnostics_figure(aid: dict[str, dict[str, dict[str, float]]],
                                 thi: dict[str, dict[str, dict[str, int]]], budget: str,
                                 aid_instances: dict[str, dict[str, list[float]]] | None = None,
                                 thi_instance: dict[str, dict[str, int]] | None = None) -> Figure:
    """AID (raw and normalised) and THI (normalised) per validation task, a bar per selection.

    ``aid[kind][selection][task]`` and ``thi[kind][selection][task]``, kind "raw" or "normalised".
    Instance level, where the diagnostics carry it: ``aid_instances[selection][task]`` (each of the
    task's validation instances' normalised AID, drawn as dots on that selection's bar: a task's
    mean can hide an instance the selection does not serve) and ``thi_instance[selection][task]``
    (selected examples whose single most influenced instance belongs to the task: a fourth panel).
    """
    names = list(aid["raw"])
    tasks = sorted({t for per in aid["raw"].values() for t in per})
    colours = method_palette(names)
    instance_panel = bool(thi_instance)
    fig = Figure(figsize=(16 if instance_panel else 12, 4.4), layout="constrained")
    axes = fig.subplots(1, 4 if instance_panel else 3)
    panels = [(aid["raw"], "AID, raw influence", "mean influence of the selection"),
              (aid["normalised"], "AID, column-normalised", "mean normalised influence"),
              (_shares(thi["normalised"]), "THI, column-normalised", "selected examples (%)")]
    if instance_panel:
        # Selections whose diagnostics predate the instance level have no bar here (NaN draws nothing).
        shares = _shares(thi_instance)
        panels.append(({n: shares.get(n, {t: np.nan for t in tasks}) for n in names},
                       "THI, instance level, normalised", "selected examples (%)"))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(tasks))
    for p, (ax, (values, title, ylabel)) in enumerate(zip(axes, panels)):
        for k, name in enumerate(names):
            offset = x + (k - (len(names) - 1) / 2) * width
            ax.bar(offset, [values[name].get(t, 0.0) for t in tasks], width, color=colours[name], label=name)
            if p == 1 and aid_instances and name in aid_instances:
                for xi, t in zip(offset, tasks):
                    points = aid_instances[name].get(t, [])
                    ax.scatter(np.full(len(points), xi), points, s=6, color="black", alpha=0.5, zorder=3,
                               linewidths=0)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, tasks, rotation=30, ha="right")
        ax.set_xlabel("validation task")
        ax.set_ylabel(ylabel)
        ax.set_title(title + (" (dots: instances)" if p == 1 and aid_instances else ""), fontsize=11)
    _legend_right(fig, axes[0])
    fig.suptitle(f"BIDS diagnostics at budget {budget}", fontsize=TITLE_SIZE)
    return fig


def _shares(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    return {name: {t: 100 * n / max(1, sum(per.values())) for t, n in per.items()} for name, per in counts.items()}


def influence_distribution_figure(raw: dict[str, np.ndarray], normalised: dict[str, np.ndarray]) -> Figure:
    """Box plots per validation task of each pool example's best influence, before and after
    column normalisation: why BIDS normalises (tasks on different scales dominate a raw max)."""
    tasks = sorted(raw)
    colours = palette(tasks)
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, ylabel in ((axes[0], raw, "raw attribution A", "max influence over the task's columns"),
                                      (axes[1], normalised, "column-normalised  Â = (A − μ) / σ",
                                       "max normalised influence")):
        parts = ax.boxplot([values[t] for t in tasks], patch_artist=True, widths=0.6, medianprops={"color": "black"},
                           flierprops={"markersize": 2, "alpha": 0.4})
        for patch, task in zip(parts["boxes"], tasks):
            patch.set_facecolor(colours[task])
            patch.set_alpha(0.75)
        ax.set_xticks(range(1, len(tasks) + 1), tasks, rotation=30, ha="right")
        ax.set_xlabel("validation task")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    n = len(next(iter(raw.values()))) if raw else 0
    fig.suptitle(f"Influence of the {n} pool examples on each validation task (row max per task)",
                 fontsize=TITLE_SIZE)
    return fig


def results_figure(per_method: dict[str, list[dict]], budget: str, base: dict | None = None,
                   metric: str = "accuracy") -> Figure:
    """Per-capability accuracy (or held-out loss, ``metric="loss"``) with mean ± std over seeds,
    then macro, worst and spread."""
    m = get_metric(metric)
    names = sorted(per_method, key=method_sort_key) + (["base (no tuning)"] if base else [])
    runs = {**per_method, **({"base (no tuning)": [base]} if base else {})}
    capabilities = sorted({c for rows in runs.values() for r in rows for c in r.get(m.key) or {}})
    groups = capabilities + list(CAPABILITY_SUMMARIES)
    colours = method_palette(names)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for k, name in enumerate(names):
        values = [metric_values(runs[name], g, metric) for g in groups]
        means = [m.scale * statistics.mean(v) if v else np.nan for v in values]
        stds = [m.scale * statistics.pstdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               color="lightgrey" if name.startswith("base") else colours[name],
               hatch="//" if name.startswith("base") else None, label=f"{name} ({len(runs[name])} seed"
               f"{'s' if len(runs[name]) != 1 else ''})", error_kw={"elinewidth": 0.8})
    ax.axvline(len(capabilities) - 0.5, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, groups)
    worst = "worst = highest loss, " if m.lower_is_better else ""
    ax.set_xlabel(f"capability  |  summaries across capabilities ({worst}spread = std across capabilities)")
    ax.set_ylabel(f"{m.label}, mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    top = max((m.scale * max(v) for rows in runs.values() for g in groups for v in [metric_values(rows, g, metric)]
               if v), default=0.0)
    # All-zero results still get a readable axis.
    ax.set_ylim(0, max(top * 1.15, 5.0 if m.scale == 100 else 0.1))
    title = ("Held-out loss per capability (lower is better)" if m.lower_is_better else "Per-capability results")
    ax.set_title(f"{title} at budget {budget}", fontsize=TITLE_SIZE)
    _legend_right(fig, ax)
    return fig


def metric_values(rows: list[dict], group: str, metric: str = "accuracy") -> list[float]:
    """A capability's score (or loss), or a summary (macro, worst, spread), over the rows (seeds);
    rows without that metric (made before the loss was measured) are left out."""
    m = get_metric(metric)
    source = m.summary if group in CAPABILITY_SUMMARIES else m.key
    return [float(r[source][group]) for r in rows if group in (r.get(source) or {})]


def ideal_figure(summary: dict) -> Figure:
    """IDEAL's domain volumes entering round 1 and after each round, and each round's β."""
    rounds = summary.get("rounds", [])
    domains = sorted(summary.get("domains") or rounds[0]["volumes"]["before"])
    stages = {"start (round 1)": rounds[0]["volumes"]["before"]}
    if summary.get("pool_volumes") and summary["pool_volumes"] != stages["start (round 1)"]:
        stages = {"pool": summary["pool_volumes"], **stages}
    stages.update({f"after round {r['round']}": r["volumes"]["after"] for r in rounds})
    # Light to dark as the rounds go on: the eye reads the bars of a domain as a sequence.
    shades = matplotlib.colormaps["Blues"](np.linspace(0.35, 0.95, len(stages)))
    colours = dict(zip(stages, shades))
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    width = 0.8 / len(stages)
    x = np.arange(len(domains))
    for k, (name, volumes) in enumerate(stages.items()):
        left.bar(x + (k - (len(stages) - 1) / 2) * width, [volumes.get(d, 0) for d in domains], width,
                 color=colours[name], label=name)
    left.set_xticks(x, domains, rotation=20, ha="right")
    left.set_xlabel("domain")
    left.set_ylabel("examples in the mixture")
    left.set_title("Domain volumes per round", fontsize=11)
    left.legend(fontsize=9, frameon=False)
    width = 0.8 / max(1, len(rounds))
    for k, r in enumerate(rounds):
        right.bar(x + (k - (len(rounds) - 1) / 2) * width, [100 * r["beta"].get(d, 0.0) for d in domains],
                  width, label=f"round {r['round']}")
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xticks(x, domains, rotation=20, ha="right")
    right.set_xlabel("domain")
    right.set_ylabel("β (%): > 0 grows a domain that helps")
    right.set_title("Relative change β = m · I / max|I| per round", fontsize=11)
    right.legend(fontsize=9, frameon=False)
    fig.suptitle("IDEAL: how each round re-balances the domains", fontsize=TITLE_SIZE)
    return fig


def learning_percentage_figure(lp: np.ndarray, overlays: dict[str, np.ndarray], losses: np.ndarray,
                               variant: str, title: str) -> Figure:
    """The LP distribution of the learned examples (with the LP of each LP selection overlaid) and
    the pool's loss per epoch (median and interquartile band)."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    name = "LP(1)" if variant == "lp1" else "LP_app"
    transform, bins, xlabel, log = _lp_axis(lp, name)

    def draw(values: np.ndarray, **style) -> None:
        # Shares of each group (not counts), so a selection of a few percent shows against the pool;
        # values beyond the axis go into the end bins rather than vanish.
        values = np.clip(transform(values), bins[0], bins[-1])
        left.hist(values, bins=bins, weights=np.full(len(values), 100 / max(1, len(values))), **style)

    draw(lp, color="lightgrey", edgecolor="grey", label=f"pool, learned examples (n={len(lp)})")
    colours = method_palette(list(overlays))
    for label, values in overlays.items():
        draw(values, histtype="step", linewidth=2, color=colours[label], label=f"{label} (n={len(values)})")
    if log:
        left.set_xscale("log")
    left.set_xlabel(xlabel)
    left.set_ylabel("share of the group's examples (%)")
    left.set_title("Learning percentage of the pool", fontsize=11)
    left.legend(fontsize=9, frameon=False)
    epochs = np.arange(losses.shape[1])
    q25, q50, q75 = np.nanpercentile(losses, [25, 50, 75], axis=0)
    right.fill_between(epochs, q25, q75, alpha=0.3, label="interquartile range")
    right.plot(epochs, q50, marker="o", label="median")
    right.set_xticks(epochs)
    right.set_xlabel("epoch (0 = before training)")
    right.set_ylabel("response loss per example")
    right.set_title("Per-example loss while the selection model trains", fontsize=11)
    right.legend(fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=TITLE_SIZE)
    return fig


def _lp_axis(lp: np.ndarray, name: str):
    """(transform, bins, label, log scale?) for the LP histogram. When nearly all learning happens
    in epoch 1 (LP piled up just below 1, as with tiny models whose first epoch takes the loss from
    ~11 to ~1), a linear axis shows one bar; 1 − LP on a log axis spreads the same ranking out
    (examples with LP >= 1 sit in the first bin)."""
    q5, q50 = np.percentile(lp, [5, 50]) if len(lp) else (0.0, 0.0)
    if q50 > 0.95 and q5 > 0.9:
        rest = 1.0 - np.asarray(lp)
        positive = rest[rest > 0]
        floor = 10.0 ** np.floor(np.log10(np.percentile(positive, 1))) if len(positive) else 1e-8

        def transform(values):
            return np.clip(1.0 - np.asarray(values), floor, None)

        top = max(float(rest.max()), floor * 10)
        return (transform, np.geomspace(floor, top, 41),
                f"1 − {name}: share of the learning after epoch 1 (log scale; high = hard)", True)
    lo, hi = np.percentile(lp, [1, 99]) if len(lp) else (0.0, 1.0)
    return np.asarray, np.linspace(min(lo, 0.0), max(hi, 1.0), 41), f"learning percentage {name} (low = hard)", False


def mixture_figure(macro: dict[str, dict[str, float]]) -> Figure:
    """The mixture benchmark's arms side by side: macro accuracy (%) and macro held-out loss
    reduction from the untuned model (%), one bar per arm (``macro[label] = {"accuracy", "reduction"}``)."""
    labels = sorted(macro, key=method_sort_key)
    colours = method_palette(labels)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    for i, (key, title) in enumerate((("accuracy", "macro accuracy (%)"), ("reduction", "macro loss reduction (%)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        values = [macro[label].get(key) for label in labels]
        ax.bar(range(len(labels)), [0.0 if v is None else v for v in values],
               color=[colours[label] for label in labels])
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(title)
        ax.axhline(0, color="#444", linewidth=0.8)
        ax.set_title(title, fontsize=TITLE_SIZE)
    fig.suptitle("Mixture benchmark: every arm against the untuned model", fontsize=TITLE_SIZE)
    return fig
