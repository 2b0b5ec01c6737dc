"""The mixture benchmark's tables: normalised per-capability numbers with standard errors, the
papers' claims beside ours, and stage times.

Every number that enters a summary is normalised, never raw nats: accuracies are in [0, 1] (shown
as %), and a held-out loss becomes its **reduction from the untuned model**, 100 × (base − arm) /
base (%; higher is better, negative when tuning made the reference answers less likely). The
summaries are those of ``evaluate.capabilities.summarise``: macro-average, worst capability,
spread (population standard deviation across capabilities).

Rows are built from each evaluation's ``metrics.json`` (``normalised_row``), so the tables can be
re-rendered from a finished run folder without the model.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from ..evaluate.capabilities import summarise


def normalised_row(metrics: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """{"accuracy": {cap: (score, stderr)}, "reduction": {cap: (percent, stderr)}, and the summaries
    "accuracy_summary" / "reduction_summary"} of one evaluation against the untuned model's."""
    accuracy = {cap: (v["score"], v.get("stderr", 0.0)) for cap, v in metrics["capabilities"].items()}
    base_loss = base["heldout_loss"]["capabilities"]
    reduction = {}
    for cap, v in metrics["heldout_loss"]["capabilities"].items():
        if cap in base_loss and base_loss[cap]["mean"] > 0:
            # The base's loss is a constant of the comparison: the standard error scales with it.
            scale = 100.0 / base_loss[cap]["mean"]
            reduction[cap] = ((base_loss[cap]["mean"] - v["mean"]) * scale, v.get("stderr", 0.0) * scale)
    return {"accuracy": accuracy, "reduction": reduction,
            "accuracy_summary": summarise({c: s for c, (s, _) in accuracy.items()}) if accuracy else None,
            "reduction_summary": summarise({c: r for c, (r, _) in reduction.items()}) if reduction else None}


def _cell(value: tuple[float, float] | None, scale: float) -> str:
    if value is None:
        return "-"
    mean, se = value
    return f"{scale * mean:.1f} ± {scale * se:.1f}"


def _mean_rows(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[float, float]]:
    """Per capability: one row's (value, stderr), or over seeds (mean, standard deviation of seeds)."""
    if len(rows) == 1:
        return rows[0][key]
    capabilities = set.intersection(*(set(r[key]) for r in rows))
    return {c: (statistics.mean(r[key][c][0] for r in rows), statistics.stdev(r[key][c][0] for r in rows))
            for c in capabilities}


def normalised_table(rows: dict[str, list[dict[str, Any]]], key: str, capabilities: list[str]) -> str:
    """One line per arm (``rows[label]``: one normalised row per seed): each capability's value ±
    its standard error (one seed) or ± the standard deviation over seeds; then macro, worst, spread."""
    scale = 100.0 if key == "accuracy" else 1.0
    header = ["arm", *capabilities, "macro", "worst", "spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, seeds in rows.items():
        values = _mean_rows(seeds, key)
        summaries = [r[f"{key}_summary"] for r in seeds if r[f"{key}_summary"]]
        cells = [_cell(values.get(c), scale) for c in capabilities]
        for part in ("macro", "worst", "spread"):
            got = [s[part] for s in summaries]
            cells.append(f"{scale * statistics.mean(got):.1f}" if got else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _macro(rows: dict[str, list[dict]], label: str, key: str = "reduction") -> float | None:
    seeds = rows.get(label) or []
    got = [r[f"{key}_summary"]["macro"] for r in seeds if r[f"{key}_summary"]]
    return statistics.mean(got) if got else None


def _spread(rows: dict[str, list[dict]], label: str, key: str = "reduction") -> float | None:
    seeds = rows.get(label) or []
    got = [r[f"{key}_summary"]["spread"] for r in seeds if r[f"{key}_summary"]]
    return statistics.mean(got) if got else None


def _macro_se(rows: dict[str, list[dict]], label: str, key: str = "reduction") -> float | None:
    """The standard error of an arm's macro from its test sets: √(Σ se²) / (number of capabilities)
    per seed, averaged over seeds (seed-to-seed variation is not in it)."""
    ses = [math.sqrt(sum(se ** 2 for _, se in r[key].values())) / len(r[key]) for r in rows.get(label) or [] if r[key]]
    return statistics.mean(ses) if ses else None


def _verdict(ours: float | None, theirs: float | None, higher_is_better: bool = True,
             noise: float | None = None) -> str:
    """"holds" or "fails", and "within noise" when the two differ by less than twice ``noise`` (the
    standard error of their difference)."""
    if ours is None or theirs is None:
        return "not measured"
    holds = ours >= theirs if higher_is_better else ours <= theirs
    verdict = "holds" if holds else "fails"
    return f"{verdict} (within noise)" if noise is not None and abs(ours - theirs) < 2 * noise else verdict


def claims_table(rows: dict[str, list[dict[str, Any]]], small: str = "5%", large: str = "15%") -> str:
    """Each paper's claim, our numbers (macro held-out loss reduction %, and accuracy %), and whether
    it holds here, and whether the difference is within the test sets' noise. A claim whose arms were
    not run reads "not measured"."""
    def both(label: str) -> str:
        red, acc = _macro(rows, label), _macro(rows, label, "accuracy")
        return ("-" if red is None else f"{red:.1f}% loss red.") + (
            "" if acc is None else f", {100 * acc:.1f}% acc")

    claims = [
        ("LESS: 5% ≥ full on the targets", f"less @ {small}", "full", _macro, True),
        ("BIDS: 15% ≥ full", f"bids @ {large}", "full", _macro, True),
        ("BIDS: more balanced than LESS (lower spread)", f"bids @ {large}", f"less @ {large}", _spread, False),
        ("RDS+: ≥ LESS (at lower cost)", f"rds+ @ {large}", f"less @ {large}", _macro, True),
        ("IDEAL: ≥ the uniform mixture of the same size", f"ideal @ {large}", f"uniform @ {large}", _macro, True),
    ]
    lines = ["| claim | ours | against | holds here? |", "|---|---|---|---|"]
    for claim, ours, against, measure, higher in claims:
        a, b = measure(rows, ours), measure(rows, against)
        noise = None
        if measure is _spread:
            shown = ("-" if a is None else f"spread {a:.1f}", "-" if b is None else f"spread {b:.1f}")
        else:
            shown = (both(ours), both(against))
            errors = [_macro_se(rows, ours), _macro_se(rows, against)]
            noise = math.hypot(*errors) if None not in errors else None
        lines.append(f"| {claim} | {ours}: {shown[0]} | {against}: {shown[1]} | {_verdict(a, b, higher, noise)} |")
    return "\n".join(lines) + ("\n\nJudged on the macro held-out loss reduction; \"within noise\": the two macros differ "
                               "by less than twice the standard error of their difference (from the test sets' "
                               "standard errors, the two arms taken as independent).")


def _stage_seconds(folder: str | Path):
    """(stage, seconds) of every finished stage manifest under ``folder`` (shards' own left out: their
    merged stage counts them)."""
    for manifest in Path(folder).rglob("manifest.json"):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(data, dict) and isinstance(data.get("seconds"), (int, float)) and data.get("stage")
                and not str(data["stage"]).endswith("-shard")):
            yield str(data["stage"]), float(data["seconds"])


def stage_times(run_dir: str | Path) -> str:
    """Seconds per stage kind, summed over every finished stage manifest under ``run_dir``."""
    totals: dict[str, list[float]] = {}
    for stage, seconds in _stage_seconds(run_dir):
        totals.setdefault(stage, []).append(seconds)
    lines = ["| stage | runs | total (min) | mean per run (s) |", "|---|---|---|---|"]
    for stage, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {stage} | {len(values)} | {sum(values) / 60:.1f} | {statistics.mean(values):.0f} |")
    return "\n".join(lines)


def anchor_table(base: dict[str, Any], published: dict[str, tuple[str, float | None, str]]) -> str:
    """The untuned model's numbers beside the published ones: ``published[capability]`` = (benchmark
    as published, number or None, protocol there); ours is this benchmark's metric on its tests."""
    lines = ["| capability | ours (untuned, this protocol) | published | their protocol |", "|---|---|---|---|"]
    for cap, (name, number, protocol) in published.items():
        got = base["capabilities"].get(cap)
        ours = "-" if got is None else f"{100 * got['score']:.1f} ± {100 * got.get('stderr', 0.0):.1f} ({got['metric']})"
        theirs = "-" if number is None or (isinstance(number, float) and math.isnan(number)) else f"{number:.1f}"
        lines.append(f"| {cap} | {ours} | {name}: {theirs} | {protocol} |")
    return "\n".join(lines)


# The folders (below RUN/influence) of the stages each grid representation costs.
REPRESENTATION_STAGES = {"less": ("warmup", "features", "scores"), "rds+": ("representations",), "embed": ("embed",)}


def representation_costs(influence: str | Path) -> dict[str, float]:
    """Seconds each representation's stages took, from their manifests under ``influence`` (a run's
    ``influence`` folder): LESS's warmup, gradient features and attribution matrix; RDS+'s hidden
    states; EMBED's encoder states. A representation with no finished stage is left out."""
    costs = {}
    for representation, folders in REPRESENTATION_STAGES.items():
        seconds = [s for folder in folders for _, s in _stage_seconds(Path(influence) / folder)]
        if seconds:
            costs[representation] = sum(seconds)
    return costs


def grid_table(rows: dict[str, list[dict[str, Any]]], labels: dict[tuple[str, str], str], key: str,
               costs: dict[str, float]) -> str:
    """Selectors (rows) × representations (columns): each cell the arm's macro (worst) of ``key``
    ("accuracy" in %, or "reduction"); ``labels[(selector, representation)]`` is the arm's row label.
    Below: each representation's cost, and which factor moves the macro more: the mean absolute
    difference between two cells that differ only in the representation, or only in the selector."""
    scale = 100.0 if key == "accuracy" else 1.0
    selectors = list(dict.fromkeys(s for s, _ in labels))
    representations = list(dict.fromkeys(r for _, r in labels))

    def summary(pair: tuple[str, str], part: str) -> float | None:
        seeds = rows.get(labels.get(pair, ""), [])
        got = [r[f"{key}_summary"][part] for r in seeds if r[f"{key}_summary"]]
        return scale * statistics.mean(got) if got else None

    lines = ["| selector \\ representation | " + " | ".join(representations) + " |", "|" + "---|" * (len(representations) + 1)]
    for selector in selectors:
        cells = []
        for representation in representations:
            macro, worst = summary((selector, representation), "macro"), summary((selector, representation), "worst")
            cells.append("-" if macro is None else f"{macro:.1f} ({worst:.1f})")
        lines.append(f"| {selector} | " + " | ".join(cells) + " |")
    lines.append("| cost of the representation | " + " | ".join(
        f"{costs[r] / 60:.1f} min" if r in costs else "-" for r in representations) + " |")
    macro = {pair: summary(pair, "macro") for pair in labels}

    def mean_difference(same_selector: bool) -> tuple[float | None, int]:
        pairs = [(macro[a], macro[b]) for a in labels for b in labels if a < b and macro[a] is not None
                 and macro[b] is not None and (a[0] == b[0]) == same_selector and (a[1] == b[1]) != same_selector]
        return (statistics.mean(abs(x - y) for x, y in pairs) if pairs else None), len(pairs)

    by_representation, n_r = mean_difference(same_selector=True)
    by_selector, n_s = mean_difference(same_selector=False)
    shown = lambda v, n: "-" if v is None else f"{v:.2f} ({n} pairs)"  # noqa: E731
    return ("\n".join(lines) + "\n\nMean absolute difference of the macro between two cells that differ only in the "
            f"representation: {shown(by_representation, n_r)}; only in the selector: {shown(by_selector, n_s)}.")
