"""The attribution matrix (LESS, BIDS and the ablations): warmup → gradient features → scores.

    influence/warmup/                  LoRA training, one checkpoint per epoch (``warmup``)
    influence/features/pool/epoch-E/   Adam features of every pool example at checkpoint E
    influence/features/validation/epoch-E/   SGD features of every validation example
    influence/scores/                  A = Σ_e w_e · cos(pool_e, validation_e), rows = pool ids

Pool features are Adam-preconditioned, validation features plain SGD gradients, both projected
and taken at every warmup checkpoint; the matrix is their learning-rate-weighted cosine. Each is a
cached stage with a manifest; the feature stores resume after an interruption and split across
processes or ``--shard`` jobs (merged by ``merge_all_shards``).
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ...artifacts import Artifact, finished_manifest, fingerprint_model, fingerprint_path, run_stage
from ...config import FeatureSettings, RunConfig
from ...data.example import Example
from ...data.loading import LoadedData
from ...errors import ArtifactMismatchError
from ...features.extract import TokenizedData, extract_features, make_projector
from ...features.gradients import lora_modules
from ...features.optimizer_state import AdamMoments
from ...features.store import FeatureStore
from ...influence.attribution import AttributionMatrix, checkpoint_weights, write_attribution
from ...layout import RunLayout
from ...train.checkpoint import list_checkpoints
from ..context import RunContext
from .sharded import StoreStage, merge_store_shards, sharded_store_stage
from .warmup import validation_data, warmup, warmup_model

logger = logging.getLogger(__name__)
# The gradient transform of each split's features: Adam-preconditioned for the pool, plain SGD for validation.
TRANSFORMS = {"pool": "adam", "validation": "sgd"}


def produce(context: RunContext, config: RunConfig, layout: RunLayout) -> Artifact | None:
    """The attribution matrix of the run: ``context`` (the pool, device, shard, stop_after),
    ``config`` (the model, validation, influence settings), ``layout`` (the run's folders). Returns
    the matrix (rows = pool ids, columns = validation examples) and its fingerprint, or None when a
    shard job or ``stop_after`` ends the run before the scores."""
    validation = validation_data(config)
    warmup_dir = warmup(context, config, layout)
    if context.stop_after == "warmup":
        return None
    settings = config.influence.features
    pool_folders = features_stage(context, warmup_dir, context.require_pool(), "pool", settings, layout)
    val_folders = features_stage(context, warmup_dir, validation, "validation", settings, layout)
    if context.is_shard_job:
        logger.info("[features] %s done; when every shard is done: instruct-select merge %s", context.shard.name,
                    layout.features)
        return None
    if context.stop_after == "features":
        return None
    scores = scores_stage(context, warmup_dir, pool_folders, val_folders, validation.examples, layout.scores)
    return Artifact(AttributionMatrix.load(scores.path), fingerprint_model(scores.path))


def features_stage(context: RunContext, warmup_dir: str | Path, data: LoadedData, split: str,
                   settings: FeatureSettings, layout: RunLayout) -> list[Path]:
    """Features of ``data`` at every warmup checkpoint of ``warmup_dir``; returns the store folders
    in epoch order.

    ``split``: "pool" (Adam-preconditioned gradients) or "validation" (plain SGD gradients);
    ``settings``: the projection, its dimension and dtype, and the batching; ``layout``: the run's
    folders (each store is ``layout.feature_store(split, epoch)``).

    The context's shard (default: this process's rank of the torch.distributed world) takes every
    N-th example into ``FOLDER/shard-i-of-N``. Under torch.distributed the main process then merges
    the shards into FOLDER; independent ``--shard`` jobs leave that to ``instruct-select merge``,
    and the folders they return are unfinished until then.
    """
    warmup_dir, transform = Path(warmup_dir), TRANSFORMS[split]
    checkpoints = list_checkpoints(warmup_dir)
    if not checkpoints:
        raise ArtifactMismatchError(f"{warmup_dir} has no checkpoints; run the warmup with save_checkpoints=true")
    folders = []
    shared: dict = {}  # what every checkpoint's extraction reuses (``_extract_into``)
    for checkpoint in checkpoints:
        folder = layout.feature_store(split, checkpoint.epoch)
        meta = {"model": fingerprint_path(warmup_dir), "checkpoint": f"epoch-{checkpoint.epoch}",
                "checkpoint_fingerprint": fingerprint_path(checkpoint.path),
                "projection_seed": settings.projection_seed, "projection": settings.projection,
                "transform": transform,
                "data": data.fingerprint, "max_length": settings.max_length}
        stage_settings = {**asdict(settings), "transform": transform, "split": split}
        inputs = {k: v for k, v in meta.items() if k in ("model", "checkpoint_fingerprint", "data")}
        folders.append(folder)
        sharded_store_stage(context, folder, StoreStage("features", stage_settings, inputs, meta), data.examples,
                            _extract_into(context, warmup_dir, checkpoint, settings, transform, shared))
    return folders


def _extract_into(context: RunContext, warmup_dir, checkpoint, settings, transform, shared: dict):
    def fill(folder: Path, examples: list[Example], meta: dict) -> dict:
        model, tokenizer = warmup_model(warmup_dir, checkpoint, context.device)
        moments = None
        if transform == "adam":
            moments = AdamMoments(checkpoint, list(lora_modules(model)), next(model.parameters()).device)
        store = FeatureStore.open_or_create(folder, [e.id for e in examples], settings.dim, settings.dtype, meta)
        # Every checkpoint hands this process the same examples (all, or its shard's share), the
        # warmup's tokenizer and LoRA shapes: tokenised and projection drawn on the first checkpoint
        # that has work to do, then reused.
        ids = tuple(e.id for e in examples)
        if shared.get("ids") != ids:
            shared.update(ids=ids, data=TokenizedData.of(tokenizer, examples, settings.max_length),
                          projector=make_projector(model, settings))
        return extract_features(model, shared["data"], store, settings, moments=moments,
                                projector=shared["projector"])
    return fill


def scores_stage(context: RunContext, warmup_dir: str | Path, pool_folders: list[Path], validation_folders: list[Path],
                 validation: list[Example], out_dir: str | Path):
    """A = Σ_e w_e · pool_e @ validation_eᵀ, blockwise from the stores; columns labelled by task.

    ``warmup_dir``: the warmup whose checkpoints' mean learning rates weigh the epochs (w_e);
    ``pool_folders``, ``validation_folders``: the feature stores in epoch order; ``validation``:
    the validation examples (the columns); ``out_dir``: the stage folder (``scores.npy``). Returns
    the StageResult."""
    checkpoints = list_checkpoints(warmup_dir)
    weights = checkpoint_weights([c.mean_lr for c in checkpoints])
    columns = [{"id": e.id, "task": e.task, "subtask": e.subtask} for e in validation]

    def build(folder: Path) -> dict:
        pool_stores = [FeatureStore.open(p) for p in pool_folders]
        val_stores = [FeatureStore.open(p) for p in validation_folders]
        if val_stores[0].ids != [e.id for e in validation]:
            raise ArtifactMismatchError("validation features were computed for other validation examples")
        return write_attribution(Path(folder), pool_stores, val_stores, weights, columns)

    inputs = {f"pool/{p.name}": fingerprint_path(p) for p in pool_folders}
    inputs.update({f"validation/{p.name}": fingerprint_path(p) for p in validation_folders})
    return run_stage(out_dir, "scores", {"weights": weights}, inputs, build)


def merge_all_shards(features_dir: str | Path) -> list[Path]:
    """Merge every checkpoint folder under ``features_dir`` (``RUN/influence/features``) that
    independent shard jobs filled; returns the folders merged (none: an INFO line says so).

    Each merged folder gets the manifest an unsharded run would have written (same settings and
    inputs), so later stages cannot tell the difference.
    """
    merged = []
    for folder in sorted(Path(features_dir).glob("*/epoch-*")):
        shards = sorted(folder.glob("shard-*-of-*"))
        if not shards or finished_manifest(folder) is not None:
            continue
        manifests = [finished_manifest(p) for p in shards]
        if any(m is None for m in manifests):
            raise ArtifactMismatchError(
                f"{folder}: shard(s) {[p.name for p, m in zip(shards, manifests) if m is None]} are unfinished; "
                "rerun those jobs, then merge again")
        settings = {k: v for k, v in manifests[0]["settings"].items() if k != "shard"}
        run_stage(folder, "features", settings, manifests[0]["inputs"], merge_store_shards)
        merged.append(folder)
    if not merged:
        logger.info("[merge] nothing to merge under %s", features_dir)
    return merged
