"""IDEAL on the lab: the pool as given vs IDEAL after each round, and IDEAL + BIDS.

For each seed, ``run_ideal`` trains the lab model on the pool as given ("uniform": every domain at
its own volume, the paper's joint-SFT baseline), measures each capability's influence on the
validation sets (the reference), resizes the domains, and retrains, for ``--rounds`` rounds; each
model is scored per capability on the test sets. With ``--bids BUDGET`` BIDS then selects BUDGET of
the final IDEAL mixture (its own warmup and gradient features on that mixture) and the model
trained on that selection is scored too, beside BIDS at the same budget on the pool as given.
The tables (mean ± std over seeds, accuracy in %) go to ``--out``, the raw rows to
RUN_DIR/experiments.json.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..artifacts import atomic_write_json, atomic_write_text
from ..config import RunConfig
from ..ideal.settings import IdealSettings
from ..lab.build import LabPaths, LabSettings, build_lab
from ..lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings, tiny_lab_settings
from ..layout import RunLayout
from ..report.tables import mean_spread_tables
from ..run.ideal_rounds import mixture_for_selection, run_ideal
from ..run.pipeline import run_config
from . import command_line, parse_list


def ideal_settings(seed: int, rounds: int, tiny: bool) -> IdealSettings:
    """IDEAL's settings on the lab: ``rounds`` rounds seeded with ``seed``, the lab presets' training
    and evaluation on the CPU (``tiny``: one epoch)."""
    train = lab_train_settings(seed=seed, save_checkpoints=False, **({"epochs": 1} if tiny else {}))
    return IdealSettings(rounds=rounds, seed=seed, device="cpu", dtype="float32", train=train,
                         eval=lab_eval_settings())


def bids_config(lab: LabPaths, model: Path, pool: Path, layout: RunLayout, seed: int, args) -> RunConfig:
    """BIDS at ``args.bids`` (a budget) of ``pool`` (warmup and features on that pool) with the lab
    ``model``, trained and scored on the lab's tests into ``layout``, seeded with ``seed``
    (``args.tiny``: one epoch, 64-dimensional features)."""
    budget, tiny = args.bids, args.tiny
    influence = lab_influence_settings(seed=seed)
    if tiny:
        influence = dataclasses.replace(influence, warmup=dataclasses.replace(influence.warmup, epochs=1),
                                        features=dataclasses.replace(influence.features, dim=64))
    train = lab_train_settings(seed=seed, save_checkpoints=False, **({"epochs": 1} if tiny else {}))
    return RunConfig(model=str(model), pool=str(pool), validation=str(lab.validation), tests=str(lab.test),
                     run_dir=str(layout.root), methods=["bids"], budgets=[budget], seed=seed, dtype="float32",
                     device="cpu", influence=influence, train=train, eval=lab_eval_settings())


def run_seed(lab: LabPaths, model: Path, layout: RunLayout, seed: int, args) -> tuple[dict[str, dict], dict]:
    """Rows {label: {"scores", "summary"}} for one seed (IDEAL's rounds of the lab ``model``, and
    BIDS unless ``args.bids`` is empty) into ``layout``'s ``seedS`` folder, and its IDEAL summary."""
    folder = layout.child(f"seed{seed}")
    summary = run_ideal(lab.pool, lab.validation, model, folder.root, ideal_settings(seed, args.rounds, args.tiny),
                        tests=lab.test)
    metrics = [r["metrics"] for r in summary["rounds"]] + [summary["final"]["metrics"]]
    rows = {"uniform (pool as given)": metrics[0]}
    rows.update({f"IDEAL round {r}": m for r, m in enumerate(metrics[1:], start=1)})
    if args.bids:
        for label, pool, sub in ((f"BIDS @ {args.bids} (pool as given)", lab.pool, "bids-pool"),
                                 (f"IDEAL + BIDS @ {args.bids}", mixture_for_selection(folder.root), "bids-ideal")):
            config = bids_config(lab, model, pool, folder.child(sub), seed, args)
            (row,) = run_config(config).rows().values()
            rows[label] = row
    return rows, summary


def volumes_table(summaries: dict[int, dict]) -> str:
    """Domain volumes entering each round and after the last, per seed."""
    domains = next(iter(summaries.values()))["domains"]
    lines = ["| seed | mixture | " + " | ".join(domains) + " | total |", "|" + "---|" * (len(domains) + 3)]
    for seed, summary in summaries.items():
        stages = [("pool", summary["pool_volumes"])] + [(f"after round {r['round']}", r["volumes"]["after"])
                                                       for r in summary["rounds"]]
        for name, volumes in stages:
            cells = [str(volumes[d]) for d in domains] + [str(sum(volumes.values()))]
            lines.append(f"| {seed} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> None:
    """``instruct-select experiment ideal`` (arguments in ``commands/experiments.py``): every seed's
    rounds, the tables written to ``args.out`` and printed."""
    start = time.time()
    lab = build_lab(args.lab_dir, tiny_lab_settings() if args.tiny else LabSettings())
    model = lab.model("small" if args.tiny else args.model_size)
    layout = RunLayout(args.run_dir)
    seeds = [int(s) for s in parse_list(args.seeds)]
    runs: dict[str, list[dict]] = {}
    summaries: dict[int, dict] = {}
    for seed in seeds:
        rows, summaries[seed] = run_seed(lab, model, layout, seed, args)
        for label, row in rows.items():
            runs.setdefault(label, []).append(row)
    header = (f"IDEAL on the capability lab{' (TINY smoke run: not a result)' if args.tiny else ''}: lab model "
              f"'{model.name}', {args.rounds} rounds, m = 0.15, seeds {', '.join(map(str, seeds))}. Accuracy (%) "
              "per capability on the test sets, mean ± std over seeds; 'uniform' trains on the pool as "
              "given; 'IDEAL round r' on the mixture after r rounds.")
    markdown = (f"# IDEAL on the lab\n\n{header}\n\n{mean_spread_tables(runs)}\n\n"
                f"Domain volumes:\n\n{volumes_table(summaries)}\n\n"
                f"Command: `{command_line()}`; {time.time() - start:.0f} s.\n")
    atomic_write_text(args.out, markdown)
    atomic_write_json(layout.experiments_json, {"seeds": seeds, "runs": runs, "ideal": summaries})
    if not args.quiet:
        print(markdown)
