"""An experiment's record: the small files of its run folder (stage manifests, metrics, selections
and their diagnostics, the attribution matrix, tables) mirrored into a folder that can be committed,
so that an experiment longer than one machine's life resumes on a fresh machine, where the run
folder (trained models, checkpoints, gradient features) is gone.

The run folder stays the cache within a machine (``artifacts.run_stage``); the record only answers
"is this cell finished?" (its evaluation's ``metrics.json`` is there) and is what the tables are
read from. A record made with other settings is refused, as the run folder's caches are.
"""
from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

from ..artifacts import MANIFEST, STARTED, atomic_path, atomic_write_json, differences, read_json
from ..errors import ConfigError

# Folders whose files are large and only needed to compute, never to read the results: of these only
# the stage manifests are kept (what each stage cost).
HEAVY_FOLDERS = {"model", "checkpoints", "features", "hidden-states", "representations", "embed", "embeddings",
                 "warmup-data"}
KEPT_SUFFIXES = {".json", ".tsv", ".md"}
KEPT_NAMES = {"scores.npy"}  # the attribution matrix: pool x validation, small
SETTINGS = "settings.json"


def recorded_files(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` a record keeps, relative to it."""
    kept = []
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if not path.is_file() or path.name.startswith(".") or path.name == STARTED:
            continue  # (STARTED: an unfinished stage's marker; the record keeps finished work)
        if HEAVY_FOLDERS & set(relative.parts[:-1]) and path.name != MANIFEST:
            continue
        if path.suffix in KEPT_SUFFIXES or path.name in KEPT_NAMES:
            kept.append(relative)
    return kept


def mirror(run_dir: str | Path, record_dir: str | Path) -> int:
    """Copy the files ``recorded_files`` keeps from ``run_dir`` into ``record_dir`` (same relative
    paths), each atomically, where missing or different. Returns how many were copied."""
    run_dir, record_dir = Path(run_dir), Path(record_dir)
    copied = 0
    for relative in recorded_files(run_dir):
        source, target = run_dir / relative, record_dir / relative
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            continue
        with atomic_path(target) as partial:
            shutil.copyfile(source, partial)
        copied += 1
    return copied


def check_settings(record_dir: str | Path, settings: dict) -> None:
    """Write ``settings`` (JSON-ready: what makes the record's results comparable) into a new record;
    refuse an existing record whose settings differ, naming what differs."""
    path = Path(record_dir) / SETTINGS
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, settings)
        return
    changed = differences(read_json(path), settings)
    if changed:
        raise ConfigError(f"the record {record_dir} was made with other settings ({'; '.join(changed)}); its "
                          "results cannot be mixed with this run's. Give another --record folder, or move it away")
