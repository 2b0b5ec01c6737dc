"""The influence stages: warmup → gradient features per checkpoint → attribution matrix.

    warmup/                 LoRA training on the pool (or a random fraction), one checkpoint per epoch
    features/pool/epoch-E/  Adam features of every pool example at checkpoint E
    features/validation/epoch-E/   SGD features of every validation example at checkpoint E
    scores/                 A = Σ_e w_e · cos(pool_e, validation_e), rows = pool ids, columns = validation

Each is a cached stage with a manifest; the feature stores resume after an interruption.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..artifacts import finished_manifest, fingerprint_path, require_finished, run_stage
from ..distributed import Shard
from ..config import FeatureSettings, LoraSettings, from_dict
from ..data.example import Example
from ..errors import ArtifactMismatchError
from ..features.extract import extract_features
from ..features.optimizer_state import AdamMoments
from ..features.sharded import merge_store_shards, sharded_store_stage
from ..features.store import FeatureStore
from ..train.checkpoint import Checkpoint, list_checkpoints, load_weights_into
from .attribution import checkpoint_weights, write_attribution


def warmup_model(warmup_dir: Path, checkpoint: Checkpoint, device: str | None = None):
    """The base model with the warmup's LoRA layers holding ``checkpoint``'s weights."""
    from ..models.loading import add_lora, load_base_model, load_tokenizer

    manifest = require_finished(warmup_dir, "warmup")
    train = manifest["settings"]["train"]
    if train.get("full_finetune"):
        raise ArtifactMismatchError(f"{warmup_dir} was a full fine-tune; gradient features need a LoRA warmup")
    base = manifest["outputs"]["base_model"]
    model = add_lora(load_base_model(base, manifest["settings"].get("dtype", "float32"), device),
                     from_dict(LoraSettings, train["lora"]))
    load_weights_into(model, checkpoint)
    model.eval()
    return model, load_tokenizer(Path(warmup_dir) / "model")


def features_stage(warmup_dir: str | Path, examples: list[Example], data_fingerprint: str, split: str,
                   transform: str, settings: FeatureSettings, out_dir: str | Path, *,
                   device: str | None = None, shard: Shard | None = None, progress: bool = True,
                   log=print) -> list[Path]:
    """Features of ``examples`` at every warmup checkpoint; returns the store folders in epoch order.

    ``shard`` (default: this process's rank of the torch.distributed world) takes every N-th
    example into ``FOLDER/shard-i-of-N``. Under torch.distributed the main process then merges
    the shards into FOLDER; independent ``--shard`` jobs leave that to ``instruct-select merge``,
    and the folders they return are unfinished until then.
    """
    warmup_dir = Path(warmup_dir)
    checkpoints = list_checkpoints(warmup_dir)
    if not checkpoints:
        raise ArtifactMismatchError(f"{warmup_dir} has no checkpoints; run the warmup with save_checkpoints=true")
    folders = []
    for checkpoint in checkpoints:
        folder = Path(out_dir) / split / f"epoch-{checkpoint.epoch}"
        meta = {"model": fingerprint_path(warmup_dir), "checkpoint": f"epoch-{checkpoint.epoch}",
                "checkpoint_fingerprint": fingerprint_path(checkpoint.path),
                "projection_seed": settings.projection_seed, "transform": transform,
                "data": data_fingerprint, "max_length": settings.max_length}
        stage_settings = {**asdict(settings), "transform": transform, "split": split}
        inputs = {k: v for k, v in meta.items() if k in ("model", "checkpoint_fingerprint", "data")}
        folders.append(folder)
        sharded_store_stage(folder, "features", stage_settings, inputs, examples, meta,
                            _extract_into(warmup_dir, checkpoint, settings, transform, device, progress,
                                          f"{split} features @ epoch {checkpoint.epoch}"),
                            shard=shard, log=log)
    return folders


def _extract_into(warmup_dir, checkpoint, settings, transform, device, progress, desc):
    def fill(folder: Path, examples: list[Example], meta: dict) -> dict:
        model, tokenizer = warmup_model(warmup_dir, checkpoint, device)
        moments = None
        if transform == "adam":
            from ..features.gradients import lora_modules

            moments = AdamMoments(checkpoint, list(lora_modules(model)), next(model.parameters()).device)
        store = FeatureStore.open_or_create(folder, [e.id for e in examples], settings.dim, settings.dtype, meta)
        return extract_features(model, tokenizer, examples, store, settings, moments=moments,
                                progress=progress, desc=desc)
    return fill


def scores_stage(warmup_dir: str | Path, pool_folders: list[Path], validation_folders: list[Path],
                 validation: list[Example], out_dir: str | Path, *, progress: bool = True, log=print):
    """A = Σ_e w_e · pool_e @ validation_eᵀ, blockwise from the stores; columns labelled by task."""
    checkpoints = list_checkpoints(warmup_dir)
    weights = checkpoint_weights([c.mean_lr for c in checkpoints])
    columns = [{"id": e.id, "task": e.task, "subtask": e.subtask} for e in validation]

    def build(folder: Path) -> dict:
        pool_stores = [FeatureStore.open(p) for p in pool_folders]
        val_stores = [FeatureStore.open(p) for p in validation_folders]
        if val_stores[0].ids != [e.id for e in validation]:
            raise ArtifactMismatchError("validation features were computed for other validation examples")
        return write_attribution(Path(folder), pool_stores, val_stores, weights, columns, progress=progress)

    inputs = {f"pool/{p.name}": fingerprint_path(p) for p in pool_folders}
    inputs.update({f"validation/{p.name}": fingerprint_path(p) for p in validation_folders})
    return run_stage(out_dir, "scores", {"weights": weights}, inputs, build, log=log)


def merge_all_shards(features_dir: str | Path, log=print) -> list[Path]:
    """Merge every checkpoint folder under ``features_dir`` that independent shard jobs filled.

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
        run_stage(folder, "features", settings, manifests[0]["inputs"], merge_store_shards, log=log)
        merged.append(folder)
    if not merged:
        log(f"[merge] nothing to merge under {features_dir}")
    return merged
