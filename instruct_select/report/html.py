"""The run report: one self-contained HTML page (figures embedded as base64 PNG) plus the PNGs.

    instruct-select report runs/demo                  # writes runs/demo/report/report.html
    from instruct_select.report.html import write_report
    page = write_report("runs/experiments", "out/report")

Built from whatever the run directory holds (``collect.collect_run``); a section whose artifacts
are absent says so on the page and how to make them, so one page serves a demo, an experiment,
an ``instruct-select run`` and an IDEAL run alike.
"""
from __future__ import annotations

import base64
import html
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import atomic_write_text, package_versions, read_json
from . import plots
from .tables import Metric, get_metric
from .collect import (RunContents, budget_key, collect_run, fill_influence, first_seed, influence_distributions,
                      learning_percentage_data)

DPI = 110


@dataclass
class Section:
    key: str
    title: str
    lead: str
    figures: list[tuple[str, str]] = field(default_factory=list)  # (png file name, caption)
    html: str = ""
    absent: str = ""


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` and its PNGs into ``out_dir`` (default ``RUN/report``); returns the page."""
    contents = collect_run(run_dir)
    out = Path(out_dir) if out_dir is not None else contents.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = [builder(contents, out) for builder in (_results, _heldout_loss, _composition, _influence_diagnostics,
                                                         _influence_distributions, _learning_percentage, _ideal)]
    if (contents.root / "mixture.json").is_file():  # the mixture benchmark's own section, only in its runs
        sections.append(_mixture(contents, out))
    page = out / "report.html"
    atomic_write_text(page, _page(contents, sections, out))
    return page


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI)
    return name


def _tag(budget: str) -> str:
    return budget.replace("%", "pct").replace(".", "_").replace("/", "-")


def _results(c: RunContents, out: Path) -> Section:
    s = Section("results", "Per-capability results",
                "Accuracy on each capability's held-out test set for the model fine-tuned on each selection; "
                "bars are the mean over seeds and whiskers their standard deviation. Right of the dashed line: "
                "macro-average, worst capability and spread (standard deviation across capabilities: lower is "
                "more balanced).")
    if not c.results:
        s.absent = (f"No results in {c.root}: neither experiments.json nor results.json with scores. They are "
                    "written by `instruct-select demo`, `instruct-select experiment` and `instruct-select run` "
                    "with tests set.")
        return s
    for budget in sorted(c.results, key=budget_key):
        name = _save(plots.results_figure(c.results[budget], budget, c.base_row), out, f"results-{_tag(budget)}.png")
        s.figures.append((name, f"Budget {budget}, from {c.results_source.name}."))
        s.html += _results_table(c.results[budget], f"Budget {budget}")
    return s


def _heldout_loss(c: RunContents, out: Path) -> Section:
    s = Section("loss", "Held-out loss per capability",
                "The loss of each test example's reference answer under the fine-tuned model (token-mean "
                "cross-entropy over the answer's tokens, nats: the loss LESS itself optimises), averaged per "
                "capability; lower is better. Where accuracy sits near the floor (small models on hard "
                "benchmarks) the loss still separates the selections. Right of the dashed line: macro-average, "
                "worst capability (the highest loss) and spread.")
    with_loss = {budget: {m: rows for m, rows in per.items() if any(r.get("loss") for r in rows)}
                 for budget, per in c.results.items()}
    with_loss = {budget: per for budget, per in with_loss.items() if per}
    if not with_loss:
        s.absent = (f"No held-out loss in the results under {c.root}: evaluations made before it was measured "
                    "lack it. Their evaluation folders are refused by the new eval settings (max_length, "
                    "loss_token_budget); delete them, or use a new run directory, and rerun to get it.")
        return s
    base = c.base_row if c.base_row and c.base_row.get("loss") else None
    for budget in sorted(with_loss, key=budget_key):
        per_method = with_loss[budget]
        fig = plots.results_figure(per_method, budget, base, metric="loss")
        missing = sorted(set(c.results[budget]) - set(per_method), key=plots.method_sort_key)
        note = f" No loss for {', '.join(missing)} (evaluated before it was measured)." if missing else ""
        s.figures.append((_save(fig, out, f"loss-{_tag(budget)}.png"), f"Budget {budget}.{note}"))
        s.html += _results_table(per_method, f"Budget {budget}", metric="loss")
    return s


def _results_table(per_method: dict[str, list[dict]], title: str, row_label: str = "method",
                   metric: str = "accuracy") -> str:
    m = get_metric(metric)
    capabilities = sorted({k for rows in per_method.values() for r in rows for k in r.get(m.key) or {}})
    columns = capabilities + list(plots.CAPABILITY_SUMMARIES)
    cells = {name: {col: plots.metric_values(rows, col, metric) for col in columns}
             for name, rows in per_method.items()}
    means = {name: {col: statistics.mean(v) if v else None for col, v in row.items()} for name, row in cells.items()}
    best = {}
    for col in columns:
        values = [means[name][col] for name in means if means[name][col] is not None]
        # Bold marks a winner; when every method ties there is none. Spread is best lowest either way.
        best[col] = (min if col == "spread" or m.lower_is_better else max)(values) if len(set(values)) > 1 else None
    head = "".join(f"<th>{html.escape(col)}</th>" for col in [row_label, *columns, "seeds"])
    body = ""
    for method in sorted(cells, key=plots.method_sort_key):
        row = cells[method]
        tds = "".join(_cell(values, best[col], m) for col, values in row.items())
        body += f"<tr><td>{html.escape(method)}</td>{tds}<td>{len(per_method[method])}</td></tr>"
    which = "lowest" if m.lower_is_better else "lowest for spread"
    return (f"<table><caption>{html.escape(title)}: {html.escape(m.label)}, mean ± std where there are several "
            f"seeds; the best value of each column in bold ({which})</caption><tr>{head}</tr>{body}</table>")


def _cell(values: list[float], best: float | None, m: Metric) -> str:
    if not values:
        return "<td>–</td>"
    mean = statistics.mean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    d = m.digits
    text = f"{m.scale * mean:.{d}f} ± {m.scale * std:.{d}f}" if len(values) > 1 else f"{m.scale * mean:.{d}f}"
    return f"<td><b>{text}</b></td>" if best is not None and abs(mean - best) < 1e-12 else f"<td>{text}</td>"


def _composition(c: RunContents, out: Path) -> Section:
    s = Section("composition", "Per-task composition of each selection",
                "Which tasks each method chose, as a share of its selection (numbers inside the bars are "
                "percentages); the pool's own composition is the top bar. A selection that mirrors the pool "
                "is not favouring any task; BIDS aims for a balanced share of influence, not of examples.")
    chosen = sorted(first_seed(c.selections), key=lambda x: (budget_key(x.budget), plots.method_sort_key(x.name)))
    if not chosen:
        s.absent = (f"No selections under {c.root} (looked for */select/diagnostics.json). "
                    "`instruct-select select`, `demo`, `experiment` and `run` write them.")
        return s
    pools = [tuple(sorted(x.pool_composition.items())) for x in chosen]
    pool = dict(max(set(pools), key=pools.count))
    bars = {x.name: x.composition for x in chosen}
    s.figures.append((_save(plots.composition_figure(bars, pool), out, "composition.png"),
                      "One bar per method and budget (the lowest seed where there are several)."))
    return s


def _influence_diagnostics(c: RunContents, out: Path) -> Section:
    s = Section("aid-thi", "Influence diagnostics of the selections (AID and THI)",
                "The BIDS paper's diagnostics, per validation task. AID: the mean influence of the selected "
                "examples on that task's validation instances (raw, and after column normalisation; the dots "
                "are the single instances, so a task's mean cannot hide one the selection does not serve). "
                "THI: the share of selected examples whose highest summed influence is on that task; at the "
                "instance level, whose single most influenced validation instance belongs to it. Column "
                "statistics leave out pool examples with no response token. Balanced bars mean the selection "
                "serves every task.")
    filled = fill_influence(first_seed(c.selections), c.attribution_dir) if c.attribution_dir else []
    with_influence = [x for x in first_seed(c.selections) if x.influence]
    if not with_influence:
        s.absent = ("No influence diagnostics: no selection carries them and no attribution matrix "
                    f"(influence/scores/scores.npy) was found under {c.root}. Select with less, bids or an "
                    "ablation (they need the matrix) to get them.")
        return s
    budgets = sorted({x.budget for x in with_influence if x.budget != "all"}, key=budget_key) or ["all"]
    for budget in budgets:
        group = sorted((x for x in with_influence if x.budget in (budget, "all")),
                       key=lambda x: plots.method_sort_key(x.name))
        aid = {k: {x.name: x.influence[k]["aid"] for x in group} for k in ("raw", "normalised")}
        thi = {k: {x.name: x.influence[k]["thi"] for x in group} for k in ("raw", "normalised")}
        # The instance level, for selections whose diagnostics carry it (made after it was added).
        aid_instances = {x.name: _per_task(x.influence["normalised"]["aid_instance"], x.influence["instance_task"])
                         for x in group if "aid_instance" in x.influence["normalised"]}
        thi_instance = {x.name: x.influence["normalised"]["thi_instance_by_task"]
                        for x in group if "thi_instance_by_task" in x.influence["normalised"]}
        figure = plots.influence_diagnostics_figure(aid, thi, budget, aid_instances, thi_instance)
        name = _save(figure, out, f"influence-aid-thi-{_tag(budget)}.png")
        here = [x.name for x in group if x.name in filled]
        note = f" AID and THI of {', '.join(here)} computed here from the attribution matrix." if here else ""
        s.figures.append((name, f"Budget {budget}.{note}"))
    return s


def _per_task(values: dict[str, float], task_of: dict[str, str]) -> dict[str, list[float]]:
    """Per-instance values grouped by their instance's task."""
    grouped: dict[str, list[float]] = {}
    for key, value in values.items():
        grouped.setdefault(task_of[key], []).append(value)
    return grouped


def _influence_distributions(c: RunContents, out: Path) -> Section:
    s = Section("influence", "Influence distributions per validation task, before and after normalisation",
                "For every pool example, its highest influence on each validation task (the max over that "
                "task's columns of the attribution matrix). Raw scores differ in scale across tasks, so a raw "
                "max favours some tasks; BIDS standardises every column first (right).")
    if c.attribution_dir is None:
        s.absent = (f"No attribution matrix under {c.root} (influence/scores/scores.npy). It is computed when a "
                    "run includes less, bids or one of their ablations.")
        return s
    raw, normalised = influence_distributions(c.attribution_dir)
    name = _save(plots.influence_distribution_figure(raw, normalised), out, "influence-distributions.png")
    s.figures.append((name, f"From {c.attribution_dir.relative_to(c.root)}; boxes span the interquartile range, "
                            "whiskers 1.5 × IQR, dots beyond them are single examples."))
    return s


def _learning_percentage(c: RunContents, out: Path) -> Section:
    s = Section("lp", "Learning percentage",
                "How much of each pool example's learning happened in the selection model's first epoch: "
                "LP(1) = (P₀ − P₁) / (P₀ − Pₙ) over perplexities. Low values are hard examples, which lp-hard "
                "keeps; the outlined histograms are the examples each LP selection took.")
    if not c.loss_dirs:
        s.absent = (f"No loss trajectories under {c.root} (losses/epoch-0, epoch-1, ...). They are written when a "
                    "run includes lp-hard, lp-easy or lp-random.")
        return s
    for i, folder in enumerate(c.loss_dirs):
        data = learning_percentage_data(folder, c.selections)
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data["counts"].items())
        title = (f"Learning percentage after {data['epochs']} epochs of the selection model\n"
                 f"{folder.relative_to(c.root)}: {counts}")
        fig = plots.learning_percentage_figure(data["lp"], data["overlays"], data["losses"], data["variant"], title)
        s.figures.append((_save(fig, out, f"learning-percentage-{i}.png"),
                          "Learned examples only (unmoved and regressed ones have no meaningful LP; they are "
                          "counted in the title); values beyond the axis are drawn in its end bins. When LP piles "
                          "up just below 1 the axis is 1 − LP on a log scale, whose first bin also holds LP ≥ 1."))
    return s


def _ideal(c: RunContents, out: Path) -> Section:
    s = Section("ideal", "IDEAL: domain volumes per round",
                "IDEAL measures each domain's influence on the reference loss through a K-FAC inverse Hessian, "
                "grows the domains that help and shrinks the others, and retrains. Left: the mixture's size per "
                "domain entering round 1 and after each round; right: each round's relative change β.")
    summary = c.ideal_summary
    if not summary or not summary.get("rounds"):
        s.absent = (f"No IDEAL run under {c.root} (ideal/summary.json). `instruct-select ideal CONFIG` writes it.")
        return s
    s.figures.append((_save(plots.ideal_figure(summary), out, "ideal-volumes.png"),
                      f"From {c.ideal_source.relative_to(c.root)}."))
    rows = [(f"round {r['round']} (mixture entering it)", r.get("metrics")) for r in summary["rounds"]]
    rows.append(("final mixture", (summary.get("final") or {}).get("metrics")))
    rows = [(label, m) for label, m in rows if m and "scores" in m]
    if rows:
        s.html = _results_table({label: [m] for label, m in rows}, "Models trained on each IDEAL mixture", "model")
    return s


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 24px 32px; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 28px; margin-bottom: 4px; } h2 { font-size: 21px; margin-top: 40px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 14px; } nav ol { columns: 2; font-size: 15px; }
.lead { max-width: 900px; } figure { margin: 16px 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; } code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
.absent { background: #fff6e5; border-left: 4px solid #f0a500; padding: 10px 14px; }
table { border-collapse: collapse; margin: 12px 0 24px; font-size: 14px; }
caption { text-align: left; color: #555; font-size: 13px; padding-bottom: 4px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; } th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
"""


def markdown_table_html(markdown: str) -> str:
    """A Markdown pipe table (as ``report.tables`` and ``report.mixture_tables`` write them) as HTML;
    the text lines around it (a table's note) follow it as paragraphs."""
    lines = [line.strip() for line in markdown.strip().splitlines() if line.strip()]
    rows = [line.strip("|").split("|") for line in lines if line.startswith("|")]
    rows = [r for r in rows if not all(set(cell.strip()) <= set("-:") for cell in r)]
    notes = "".join(f"<p>{html.escape(line)}</p>" for line in lines if not line.startswith("|"))
    if not rows:
        return notes
    head = "".join(f"<th>{html.escape(cell.strip())}</th>" for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell.strip())}</td>" for cell in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


def _mixture(c: RunContents, out: Path) -> Section:
    s = Section("mixture", "Mixture benchmark",
                "Normalised per-capability numbers (accuracy %, held-out loss reduction from the untuned model %) "
                "with standard errors, the papers' claims beside ours, and the untuned model beside its model card.")
    data = read_json(c.root / "mixture.json")
    if data.get("macro"):
        s.figures.append((_save(plots.mixture_figure(data["macro"]), out, "mixture.png"),
                          "Macro accuracy and macro loss reduction per arm."))
    for title, table in data.get("tables", {}).items():
        s.html += f"<h3>{html.escape(title)}</h3>" + markdown_table_html(table)
    return s


def _page(c: RunContents, sections: list[Section], out: Path) -> str:
    version = package_versions()["instruct_select"]  # the installed distribution's, as manifests record it
    toc = "".join(f"<li><a href='#{s.key}'>{html.escape(s.title)}</a>{' (absent)' if s.absent else ''}</li>"
                  for s in sections)
    body = "".join(_section_html(s, out) for s in sections)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Selection report: {html.escape(str(c.root))}</title><style>{CSS}</style></head><body>"
            f"<h1>Selection report</h1><p class='meta'>Run directory <code>{html.escape(str(c.root.resolve()))}"
            f"</code> · written {time.strftime('%Y-%m-%d %H:%M')} by instruct_select {version} · "
            f"{len(c.selections)} selection folder(s)</p><nav><ol>{toc}</ol></nav>{body}</body></html>\n")


def _section_html(s: Section, out: Path) -> str:
    parts = [f"<section id='{s.key}'><h2>{html.escape(s.title)}</h2><p class='lead'>{html.escape(s.lead)}</p>"]
    if s.absent:
        parts.append(f"<p class='absent'>Not in this run. {html.escape(s.absent)}</p>")
    for name, caption in s.figures:
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)} <a href='{html.escape(name)}'>{html.escape(name)}</a>"
                     "</figcaption></figure>")
    parts.append(s.html + "</section>")
    return "".join(parts)
