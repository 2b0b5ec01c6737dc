"""IDEAL's domain influence for one round: K-FAC / EK-FAC statistics of the model the round trained,
each domain's influence on the reference loss, the new volumes and the resized mixture.

    RUN/ideal/round-R/  volumes.json (before/after/β per domain), influences.json, scores.tsv
                        (per-example s_i), mixture.<ext> (the input's own format), mixture.tsv

A cached stage like every producer; the statistics passes shard the examples over a
torch.distributed process group when one is initialised and all-reduce every sum. LoRA: the
influences are gradients with respect to the chosen layers' weights of the model training
produced, so an adapter is merged into a fresh copy of its base (``merge_and_unload``) first.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from ...artifacts import StageResult, atomic_write_json, atomic_write_text, fingerprint_json, fingerprint_model, run_stage
from ...data.chat import tokenize_examples
from ...data.example import Example
from ...ideal.domain_gradients import Mixture, PassSettings, SolveSettings, compute_influences
from ...ideal.settings import IdealSettings
from ...ideal.update import entry_counts, influence_to_beta, mixture_entries, new_volumes, write_mixture
from ...models.loading import load_tokenizer, load_trained
from ..context import RunContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdealRound:
    """What round ``number`` starts from: the model trained on the mixture entering it, the domain
    volumes of that mixture, the pool's examples per domain and the reference set."""

    number: int
    model_dir: Path
    volumes: dict[str, int]
    pools: dict[str, list[str]]
    domain_of: dict[str, str]
    reference: list[Example]


def load_for_influence(context: RunContext, model_dir: str | Path):
    """The trained model in ``model_dir`` (loaded with the context's dtype and device) with any LoRA
    adapter merged into its weights, and its tokenizer (the context's chat template)."""
    model = load_trained(model_dir, dtype=context.dtype, device=context.device)
    if hasattr(model, "merge_and_unload"):  # a PeftModel: fold B·A into the base weights
        model = model.merge_and_unload()
    return model, load_tokenizer(model_dir, context.chat_template)


def produce(context: RunContext, settings: IdealSettings, folder: Path, round: IdealRound) -> StageResult:
    """Measure the round's domain influences and write the resized mixture into ``folder``.

    ``context``: the pool (the whole training data), dtype, device and chat template; ``settings``:
    IDEAL's settings (K-FAC passes, damping, layers, m, min_volume, seed); ``folder``: the round's
    stage folder (``RUN/ideal/round-R``); ``round``: the model, volumes, domains and reference set
    it starts from. Returns the StageResult (``outputs``: volumes before and after, influences, β,
    the reference loss in nats, the mixture file's name)."""
    loaded = context.require_pool()
    volumes, pools = round.volumes, round.pools
    stage_settings = {"round": round.number, "volumes_before": volumes, **settings.influence_settings(),
                      "domains": {d: len(ids) for d, ids in pools.items()}}
    inputs = {"pool": loaded.fingerprint, "model": fingerprint_model(round.model_dir.parent),
              "reference": fingerprint_json([[e.id, e.messages] for e in round.reference])}

    def build(out: Path) -> dict:
        net, tokenizer = load_for_influence(context, round.model_dir)
        counts = entry_counts(mixture_entries(pools, volumes, settings.seed))
        by_id = loaded.by_id()
        items, report = tokenize_examples(tokenizer, [by_id[i] for i in sorted(counts)], settings.train.max_length)
        ref_items, ref_report = tokenize_examples(tokenizer, round.reference, settings.train.max_length)
        for name, rep in (("mixture", report), ("reference", ref_report)):
            if rep.truncated or rep.no_response:
                logger.info("[ideal] %s: %s", name, rep.summary())
        cfg = PassSettings(pad_id=tokenizer.pad_token_id, token_budget=settings.token_budget,
                           batch_size=settings.batch_size, fisher=settings.fisher,
                           seed=settings.seed * 1000 + round.number)
        solve = SolveSettings(layers=settings.layers, damping=settings.damping, relative=settings.damping_relative,
                              ekfac=settings.ekfac, layers_per_pass=settings.layers_per_pass)
        result = compute_influences(net, Mixture(items, round.domain_of, counts), ref_items, cfg, solve,
                                    fit_items=_subset(items, settings.fit_examples, settings.seed))
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
        rows = ["id\tdomain\tcount\tscore"] + [f"{i}\t{round.domain_of[i]}\t{counts[i]}\t{s:.6g}"
                                               for i, s in sorted(result.scores.items())]
        atomic_write_text(out / "scores.tsv", "\n".join(rows) + "\n")
        return {"volumes": {"before": volumes, "after": after}, "influences": result.influences,
                "beta": beta, "reference_loss": result.reference_loss, "mixture": mixture.name}

    return run_stage(folder, "ideal-round", stage_settings, inputs, build, seed=settings.seed)


def _subset(items: list, n: int, seed: int) -> list | None:
    """A seeded subset of ``n`` items (by id), or None for all."""
    if not n or n >= len(items):
        return None
    return sorted(random.Random(f"ideal-fit:{seed}").sample(sorted(items, key=lambda x: x.id), n),
                  key=lambda x: x.id)
