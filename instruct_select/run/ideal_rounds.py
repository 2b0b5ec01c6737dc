"""IDEAL's rounds: train on the current mixture, measure each domain's influence, resize, repeat.

    from instruct_select.run.ideal_rounds import run_ideal
    summary = run_ideal("pool.jsonl", "validation/", "meta-llama/Llama-3.1-8B", "runs/x", IdealSettings())

Each round trains and evaluates through the one loop (``arms.train_and_evaluate``) and measures
the domain influences with its producer (``producers.domain_influence``); the folders are the run
layout's (``RUN/ideal/round-R/``, ``RUN/ideal/final/``, ``RUN/ideal/summary.json``). Every part
is a cached stage: a rerun with the same settings reuses it, one with other settings is refused by
name.

Composing with a selection method (e.g. BIDS inside the new mixture): ``mixture_for_selection``
returns the final mixture's file; it loads as an ordinary pool (repeats have their own ids), so a
``RunConfig`` with it as the pool runs unchanged (``experiments.ideal`` does exactly that).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_json, read_json
from ..config import RunConfig
from .context import RunContext
from ..data.loading import load_examples
from ..errors import ArtifactMismatchError
from ..ideal.domains import domain_labels, group_by_domain, load_domain_map, reference_examples
from ..ideal.settings import IdealSettings
from ..layout import ArmFolders, RunLayout
from .arms import train_and_evaluate
from .producers.domain_influence import IdealRound, produce

logger = logging.getLogger(__name__)


def run_ideal(pool_path: str | Path, reference_path: str | Path, model: str | Path,
              run_dir: str | Path, settings: IdealSettings | None = None, *,
              tests: str | Path | None = None) -> dict[str, Any]:
    """Run ``settings.rounds`` IDEAL rounds; returns per-round volumes, influences and metrics.

    ``pool_path``: the training mixture (a file or folder, each example with its domain);
    ``reference_path``: the reference set whose loss the influences are on (one file per task);
    ``model``: the base model (a folder or hub id); ``run_dir``: the run folder (``ideal/round-R``,
    ``ideal/final``, ``ideal/summary.json``); ``settings``: IDEAL's settings (default
    ``IdealSettings()``); ``tests``: the test sets each round's model is evaluated on (none: no
    evaluation). Volumes are numbers of examples; influences are changes of the mean reference loss
    (nats) per unit of upweighting.

    ``rounds[r]["metrics"]`` are those of the model trained on the mixture ENTERING round r+1
    (round 1: the input mixture, the uniform baseline); ``final["metrics"]`` those of the model
    trained on the last mixture.
    """
    settings = settings or IdealSettings()
    context = RunContext.create(device=settings.device, pool=pool_path, dtype=settings.dtype,
                            chat_template=settings.chat_template or None)
    config = RunConfig(model=str(model), pool=str(pool_path), validation=str(reference_path), tests=str(tests or ""),
                       run_dir=str(run_dir), dtype=settings.dtype, device=settings.device,
                       chat_template=settings.chat_template, seed=settings.seed, train=settings.train,
                       eval=settings.eval)
    loaded = context.require_pool()
    domain_of = domain_labels(loaded.examples, load_domain_map(settings.domain_map, settings.domain_map_file or None),
                              settings.domain_field)
    pools = group_by_domain(domain_of)
    reference = reference_examples(reference_path, settings.reference_tasks, settings.reference_size, settings.seed)
    layout = RunLayout(run_dir)
    volumes = {d: len(ids) for d, ids in pools.items()}
    logger.info("[ideal] %d examples in %d domains %s; %d reference examples", len(loaded.examples), len(pools),
                volumes, len(reference))
    summary: dict[str, Any] = {"domains": sorted(pools), "pool_volumes": dict(volumes), "rounds": [],
                               "final": None, "reference_examples": len(reference)}
    data, data_path = loaded, Path(pool_path)
    for r in range(1, settings.rounds + 1):
        folder = layout.ideal_round(r)
        model_dir, metrics = train_and_evaluate(context, config, ArmFolders(folder), seed=settings.train.seed, data=data)
        stage = produce(context, settings, folder, IdealRound(r, model_dir, volumes, pools, domain_of, reference))
        out = stage.manifest["outputs"]
        summary["rounds"].append({"round": r, "model": str(model_dir), "metrics": metrics,
                                  "volumes": out["volumes"], "influences": out["influences"],
                                  "beta": out["beta"], "mixture": str(folder / out["mixture"])})
        volumes = out["volumes"]["after"]
        data_path = folder / out["mixture"]
        data = load_examples(data_path)
        logger.info("[ideal] round %d: influences %s; volumes -> %s", r, _fmt(out["influences"]), volumes)
    if settings.train_final:
        model_dir, metrics = train_and_evaluate(context, config, ArmFolders(layout.ideal_final), seed=settings.train.seed,
                                                data=data)
        summary["final"] = {"mixture": str(data_path), "model": str(model_dir), "metrics": metrics,
                            "volumes": volumes}
    atomic_write_json(layout.ideal_summary, summary)
    return summary


def _fmt(values: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.3g}" for k, v in values.items()) + "}"


def mixture_for_selection(run_dir: str | Path, round: int | None = None) -> Path:
    """The mixture file (input format) that IDEAL produced: the last round's, or ``round``'s.

    Repeated examples are separate pool entries (ids "<id>#r2", ...) with identical content.
    """
    summary = RunLayout(run_dir).ideal_summary
    if not summary.is_file():
        raise ArtifactMismatchError(f"{summary.parent} holds no finished IDEAL run (no summary.json); run "
                                    "run_ideal (instruct-select ideal) first")
    rounds = read_json(summary)["rounds"]
    chosen = rounds[-1] if round is None else next((x for x in rounds if x["round"] == round), None)
    if chosen is None:
        raise ArtifactMismatchError(f"{summary.parent} has rounds {[x['round'] for x in rounds]}, not {round}")
    return Path(chosen["mixture"])
