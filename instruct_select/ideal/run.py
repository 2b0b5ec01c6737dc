"""IDEAL's rounds: train on the current mixture, measure each domain's influence, resize, repeat.

    from instruct_select.ideal import IdealSettings, run_ideal
    summary = run_ideal("pool.jsonl", "validation/", "meta-llama/Llama-3.1-8B", "runs/x", IdealSettings())

Layout under ``RUN_DIR/ideal/``:

    round-R/train/        the model trained on the mixture entering round R (round 1: the input)
    round-R/evaluation/   its per-capability scores, when tests are given
    round-R/              volumes.json (before/after/β per domain), influences.json, scores.tsv
                          (per-example s_i), mixture.<ext> (the resized mixture in the input's own
                          format), mixture.tsv (mixture id, source id, domain), manifest.json
    final/train, final/evaluation   the model trained on the last mixture (``train_final``)
    summary.json          what ``run_ideal`` returns

Each part is a cached stage: a rerun with the same settings reuses it, one with other settings
is refused by name. LoRA: the influences are gradients with respect to the chosen layers'
weights of the model training produced, so a LoRA adapter is merged into a freshly loaded copy
of its base (``merge_and_unload``) before the statistics; the chosen layers need not carry
adapters.

Processes: the statistics passes (``influence``, ``kfac``) shard the examples over a
torch.distributed process group when one is initialised and all-reduce every sum; the training,
evaluation and file writing this module orchestrates are single-process.

Composing with a selection method (e.g. BIDS inside the new mixture): ``mixture_for_selection``
returns the final mixture's file. It loads as an ordinary pool (repeats have their own ids), so
``pipeline.prepare_artifacts`` / ``select_stage`` / ``train_stage`` run on it unchanged;
``experiments/ideal_lab.py`` does exactly that.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_json, atomic_write_text, fingerprint_json, fingerprint_model, read_json, run_stage
from ..data.chat import tokenize_examples
from ..errors import ArtifactMismatchError
from .domains import domain_labels, group_by_domain, load_domain_map, reference_examples
from .influence import PassSettings, compute_influences
from .settings import IdealSettings
from .update import entry_counts, influence_to_beta, mixture_entries, new_volumes, write_mixture


def run_ideal(pool_path: str | Path, reference_path: str | Path, model: str | Path,
              run_dir: str | Path, settings: IdealSettings | None = None, *,
              tests: str | Path | None = None, progress: bool = True, log=print) -> dict[str, Any]:
    """Run ``settings.rounds`` IDEAL rounds; returns per-round volumes, influences and metrics.

    ``rounds[r]["metrics"]`` are those of the model trained on the mixture ENTERING round r+1
    (round 1: the input mixture, the uniform baseline); ``final["metrics"]`` those of the model
    trained on the last mixture.
    """
    from ..pipeline import load_pool

    settings = settings or IdealSettings()
    loaded = load_pool(pool_path)
    mapping = load_domain_map(settings.domain_map, settings.domain_map_file or None)
    domain_of = domain_labels(loaded.examples, mapping, settings.domain_field)
    pools = group_by_domain(domain_of)
    reference = reference_examples(reference_path, settings.reference_tasks, settings.reference_size,
                                   settings.seed)
    root = Path(run_dir) / "ideal"
    volumes = {d: len(ids) for d, ids in pools.items()}
    log(f"[ideal] {len(loaded.examples)} examples in {len(pools)} domains {volumes}; "
        f"{len(reference)} reference examples")
    summary: dict[str, Any] = {"domains": sorted(pools), "pool_volumes": dict(volumes), "rounds": [],
                               "final": None, "reference_examples": len(reference)}
    data_path = Path(pool_path)
    for r in range(1, settings.rounds + 1):
        folder = root / f"round-{r}"
        model_dir, metrics = _train_and_evaluate(model, data_path, folder, settings, tests, progress, log)
        stage = _round_stage(r, folder, model_dir, loaded, pools, domain_of, volumes, reference,
                             settings, progress, log)
        out = stage.manifest["outputs"]
        summary["rounds"].append({"round": r, "model": str(model_dir), "metrics": metrics,
                                  "volumes": out["volumes"], "influences": out["influences"],
                                  "beta": out["beta"], "mixture": str(folder / out["mixture"])})
        volumes = out["volumes"]["after"]
        data_path = folder / out["mixture"]
        log(f"[ideal] round {r}: influences {_fmt(out['influences'])}; volumes -> {volumes}")
    if settings.train_final:
        model_dir, metrics = _train_and_evaluate(model, data_path, root / "final", settings, tests,
                                                 progress, log)
        summary["final"] = {"mixture": str(data_path), "model": str(model_dir), "metrics": metrics,
                            "volumes": volumes}
    atomic_write_json(root / "summary.json", summary)
    return summary


def _fmt(values: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.3g}" for k, v in values.items()) + "}"


def _train_and_evaluate(model, data_path: Path, folder: Path, settings: IdealSettings, tests,
                        progress: bool, log) -> tuple[Path, dict | None]:
    from ..pipeline import evaluate_stage, train_stage

    trained = train_stage(model, data_path, folder / "train", settings.train,
                          chat_template=settings.chat_template or None, dtype=settings.dtype,
                          device=settings.device, progress=progress, log=log)
    model_dir = trained.path / "model"
    if not tests:
        return model_dir, None
    result = evaluate_stage(model_dir, tests, folder / "evaluation", settings.eval, dtype=settings.dtype,
                            device=settings.device, progress=progress, log=log)
    return model_dir, result.manifest["outputs"]


def load_for_influence(model_dir: str | Path, settings: IdealSettings):
    """The trained model with any LoRA adapter merged into its weights, and its tokenizer."""
    from ..models.loading import load_tokenizer, load_trained

    model = load_trained(model_dir, dtype=settings.dtype, device=settings.device)
    if hasattr(model, "merge_and_unload"):  # a PeftModel: fold B·A into the base weights
        model = model.merge_and_unload()
    return model, load_tokenizer(model_dir, settings.chat_template or None)


def _round_stage(r: int, folder: Path, model_dir: Path, loaded, pools, domain_of, volumes,
                 reference, settings: IdealSettings, progress: bool, log):
    stage_settings = {"round": r, "volumes_before": volumes, **settings.influence_settings(),
                      "domains": {d: len(ids) for d, ids in pools.items()}}
    inputs = {"pool": loaded.fingerprint, "model": fingerprint_model(model_dir.parent),
              "reference": fingerprint_json([[e.id, e.messages] for e in reference])}

    def build(out: Path) -> dict:
        net, tokenizer = load_for_influence(model_dir, settings)
        entries = mixture_entries(pools, volumes, settings.seed)
        counts = entry_counts(entries)
        by_id = loaded.by_id()
        items, report = tokenize_examples(tokenizer, [by_id[i] for i in sorted(counts)], settings.train.max_length)
        ref_items, ref_report = tokenize_examples(tokenizer, reference, settings.train.max_length)
        for name, rep in (("mixture", report), ("reference", ref_report)):
            if rep.truncated or rep.no_response:
                log(f"[ideal] {name}: {rep.summary()}")
        cfg = PassSettings(pad_id=tokenizer.pad_token_id, token_budget=settings.token_budget,
                           batch_size=settings.batch_size, fisher=settings.fisher,
                           seed=settings.seed * 1000 + r, progress=progress)
        result = compute_influences(net, items, domain_of, ref_items, cfg, layers=settings.layers,
                                    damping=settings.damping, relative=settings.damping_relative,
                                    ekfac=settings.ekfac, counts=counts,
                                    fit_items=_subset(items, settings.fit_examples, settings.seed),
                                    layers_per_pass=settings.layers_per_pass)
        beta = influence_to_beta(result.influences, settings.m)
        after = new_volumes(volumes, beta, settings.min_volume)
        mixture = write_mixture(loaded, mixture_entries(pools, after, settings.seed), out)
        sizes = {d: len(ids) for d, ids in pools.items()}
        atomic_write_json(out / "volumes.json", {"before": volumes, "after": after, "beta": beta,
                                                 "pool": sizes, "total_before": sum(volumes.values()),
                                                 "total_after": sum(after.values())})
        atomic_write_json(out / "influences.json", {
            "influences": result.influences, "reference_loss": result.reference_loss,
            "reference_examples": len(ref_items), "scored_examples": len(items),
            "excluded_no_response": report.no_response, "layers": result.layers,
            "damping": result.damping, "fisher": settings.fisher, "ekfac": settings.ekfac,
            "meaning": "I_j = dL_ref/d(up-weight of domain j) = -grad L_ref^T H^-1 sum_{i in D_j} grad L_i; "
                       "negative helps; beta_j = -m I_j / max|I|"})
        rows = ["id\tdomain\tcount\tscore"] + [f"{i}\t{domain_of[i]}\t{counts[i]}\t{s:.6g}"
                                               for i, s in sorted(result.scores.items())]
        atomic_write_text(out / "scores.tsv", "\n".join(rows) + "\n")
        return {"volumes": {"before": volumes, "after": after}, "influences": result.influences,
                "beta": beta, "reference_loss": result.reference_loss, "mixture": mixture.name}

    return run_stage(folder, "ideal-round", stage_settings, inputs, build, seed=settings.seed, log=log)


def _subset(items: list, n: int, seed: int) -> list | None:
    """A seeded subset of ``n`` items (by id), or None for all."""
    if not n or n >= len(items):
        return None
    return sorted(random.Random(f"ideal-fit:{seed}").sample(sorted(items, key=lambda x: x.id), n),
                  key=lambda x: x.id)


def mixture_for_selection(run_dir: str | Path, round: int | None = None) -> Path:
    """The mixture file (input format) that IDEAL produced: the last round's, or ``round``'s.

    Use it as the pool of a selection run, e.g. BIDS inside the IDEAL mixture:

        pool = mixture_for_selection(run_dir)
        artifacts, fps = prepare_artifacts({"attribution"}, pool, validation, model, out / "influence", influence)
        sel = select_stage(pool, "bids", "50%", out / "select", artifacts=artifacts, artifact_fingerprints=fps)
        train_stage(model, pool, out / "train", train, selection_dir=sel.path)

    Repeated examples are separate pool entries (ids "<id>#r2", ...) with identical content.
    """
    root = Path(run_dir) / "ideal"
    if not (root / "summary.json").is_file():
        raise ArtifactMismatchError(f"{root} holds no finished IDEAL run (no summary.json); run "
                                    "run_ideal (instruct-select ideal) first")
    rounds = read_json(root / "summary.json")["rounds"]
    chosen = rounds[-1] if round is None else next((x for x in rounds if x["round"] == round), None)
    if chosen is None:
        raise ArtifactMismatchError(f"{root} has rounds {[x['round'] for x in rounds]}, not {round}")
    return Path(chosen["mixture"])
