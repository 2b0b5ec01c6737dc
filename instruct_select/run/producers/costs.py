"""What each representation of the grid cost in a run: the seconds its stages took, read from their
manifests (``artifacts.run_stage`` records them), for a benchmark's table beside the selections.

    less   the warmup, the gradient features of pool and validation at every checkpoint, the scores
    rds+   the base model's pooled states of pool and validation
    embed  the encoder's pooled states of pool and validation

The selectors' own time is not included (it is the select stage of each arm). A stage that shard
jobs split counts each shard's time and the merge.
"""
from __future__ import annotations

from pathlib import Path

from ...artifacts import finished_manifest
from ...errors import ArtifactMismatchError
from ...layout import RunLayout


def representation_folders(layout: RunLayout, representation: str) -> list[Path]:
    """The stage folders that make ``representation``'s artifact in the run at ``layout``."""
    splits = ("pool", "validation")
    if representation == "less":
        return [layout.warmup, *sorted(layout.features.glob("*/epoch-*")), layout.scores]
    if representation == "rds+":
        return [layout.representations(split) for split in splits]
    if representation == "embed":
        return [layout.encoder_embeddings(split) for split in splits]
    raise ArtifactMismatchError(f"no stages are known for representation {representation!r}")


def representation_seconds(layout: RunLayout, representation: str) -> float | None:
    """Seconds ``representation``'s stages took (shards included); None when one is unfinished or
    absent (the run did not compute this representation)."""
    folders = representation_folders(layout, representation)
    if representation == "less" and len(folders) == 2:  # no feature stores: the features never ran
        return None
    total = 0.0
    for folder in folders:
        manifest = finished_manifest(folder)
        if manifest is None:
            return None
        total += float(manifest.get("seconds", 0.0))
        for shard in sorted(folder.glob("shard-*-of-*")):
            total += float((finished_manifest(shard) or {}).get("seconds", 0.0))
    return round(total, 3)
