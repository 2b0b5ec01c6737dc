"""A stage whose output is one FeatureStore over examples, split across processes or shard jobs.

Gradient features, loss trajectories and embeddings are all "one row per example" passes, so they
share one way of scaling out:

    FOLDER/                  the store over every example, with the manifest an unsharded run writes
    FOLDER/shard-i-of-N/     rank or job i's store over examples[i::N], with its own manifest

Under torch.distributed every rank fills its shard and the main process merges the shards into
FOLDER while the others wait. Independent ``--shard i/N`` jobs only fill their shard and leave the
merge to ``instruct-select merge``. A single process fills FOLDER directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...artifacts import StageResult, finished_manifest, run_shard_stage, run_stage
from ...data.example import Example
from ..context import RunContext
from ...distributed import barrier, is_main, process_shard
from ...errors import ArtifactMismatchError
from ...features.store import ids_fingerprint, merge_shard_stores

# fill(folder, examples, meta) writes a FeatureStore with ``meta`` over ``examples`` into ``folder``
# (resuming what an interrupted run left) and returns facts for the manifest.
Fill = Callable[[Path, list[Example], dict], dict]


@dataclass(frozen=True)
class StoreStage:
    """What a sharded store stage is: its ``name`` (the manifest's stage), the ``settings`` and the
    ``inputs`` (fingerprints) its manifest records, and the ``meta`` its FeatureStore records
    (default: the settings and inputs together)."""

    name: str
    settings: dict
    inputs: dict
    meta: dict | None = None

    @property
    def store_meta(self) -> dict:
        """The meta the FeatureStore records: ``meta``, or the settings and inputs together."""
        return {**self.settings, **self.inputs} if self.meta is None else self.meta


def sharded_store_stage(context: RunContext, folder: str | Path, spec: StoreStage, examples: list[Example],
                        fill: Fill) -> StageResult | None:
    """Run ``fill`` over ``examples`` into ``folder``, split by the context's shard.

    ``spec``: the stage's name, settings, inputs and store meta; ``fill(folder, examples, meta)``
    writes a FeatureStore over the examples it is given. ``context.shard`` None means this process's
    rank of the torch.distributed world (the whole set when there is none), merged into ``folder``
    afterwards; an explicit ``Shard`` is an independent job, which returns None: ``folder`` is
    unfinished until every job is done and merged. Returns the StageResult of ``folder``.
    """
    folder = Path(folder)
    stage, settings, inputs, meta = spec.name, spec.settings, spec.inputs, spec.store_meta
    collective = context.shard is None
    shard = context.shard or process_shard()
    if finished_manifest(folder) is None and shard.count == 1:
        _refuse_unmerged_shards(folder)
    if finished_manifest(folder) is not None or shard.count == 1:
        return run_stage(folder, stage, settings, inputs, lambda f: fill(f, examples, meta))
    shard_meta = {**meta, "shard_index": shard.index, "shard_count": shard.count,
                  "ids_fingerprint": ids_fingerprint([e.id for e in examples])}
    run_shard_stage(folder / shard.name, f"{stage}-shard", {**settings, "shard": shard.name}, inputs,
                    lambda f: fill(f, shard.take(examples), shard_meta))
    if not collective:
        return None
    barrier()
    return run_stage(folder, stage, settings, inputs, merge_store_shards)


def _refuse_unmerged_shards(folder: Path) -> None:
    """A single process must not recompute, and so silently drop, what shard jobs left here."""
    shards = sorted(p.name for p in folder.glob("shard-*-of-*") if p.is_dir())
    if shards:
        raise ArtifactMismatchError(
            f"{folder} holds the work of --shard jobs ({', '.join(shards)}) and no merged result: finish "
            f"every shard, then run `instruct-select merge {folder.parent.parent}`; or delete the shard "
            "folders to compute everything in this process")


def merge_store_shards(folder: Path) -> dict:
    """Merge ``folder``/shard-*-of-N into ``folder`` (main process only; the others wait at the barrier);
    returns the manifest's facts (the shards merged, the rows). An unfinished shard is refused."""
    if not is_main():
        return {}
    shards = sorted(p for p in Path(folder).glob("shard-*-of-*") if p.is_dir())
    unfinished = [p.name for p in shards if finished_manifest(p) is None]
    if unfinished:
        raise ArtifactMismatchError(f"{folder}: shards {unfinished} are unfinished; rerun them before merging")
    merged = merge_shard_stores(folder, shards)
    return {"merged_shards": [p.name for p in shards], "rows": len(merged.ids)}
