"""Run directories that explain themselves: manifests, fingerprints, atomic writes, stage skipping.

A stage writes its outputs into its own folder of the run directory and, last, a ``manifest.json``
recording the settings, the fingerprints of its inputs, the package versions, the seed and the time
taken. The manifest is the commit marker: a folder without one is unfinished and no reader trusts
it. Rerunning a stage with the same settings and inputs skips it; with different ones it is
refused, naming the setting that differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ArtifactMismatchError

MANIFEST = "manifest.json"
STARTED = "started.json"  # what an unfinished stage folder was started with (settings, inputs)
# ``--restart``: start interrupted stages afresh instead of refusing ones started with other
# settings. Set for the length of one command (``restarting``), read by ``run_stage``.
_RESTART: ContextVar[bool] = ContextVar("restart_interrupted_stages", default=False)
# The stage being built, for the message a Ctrl-C ends with ("interrupted during features").
CURRENT_STAGE: ContextVar[str | None] = ContextVar("current_stage", default=None)


@contextmanager
def restarting(enabled: bool = True) -> Iterator[None]:
    """Within this block, ``run_stage`` deletes an interrupted stage started with other settings
    (a folder holding the project's ``started.json`` and no manifest) and builds it afresh."""
    token = _RESTART.set(enabled)
    try:
        yield
    finally:
        _RESTART.reset(token)


# --------------------------------------------------------------------------------------------
# Atomic writes: a reader sees the old file or the new one, never half of one.


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Works for files and for directories (a directory target is replaced whole). On failure the
    temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = tmp / (path.name + ".old")
            os.replace(path, old)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Fingerprints


def fingerprint_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint_json(obj: Any) -> str:
    return fingerprint_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def fingerprint_path(path: str | os.PathLike) -> str:
    """SHA-256 over a file's bytes, or over a directory's relative names and file bytes.

    A finished stage folder is fingerprinted by its manifest alone (cheap, and it already names
    everything that made the folder).
    """
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        return fingerprint_bytes((path / MANIFEST).read_bytes())
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint_model(name_or_path: str | os.PathLike) -> str:
    """A cheap identity for a model: its finished manifest, or its small files plus weight sizes.

    Hashing every weight byte of a 16 GB model on each run would cost minutes; config, tokenizer
    and the weight files' names and sizes identify it well enough. A hub id is its own identity.
    """
    path = Path(name_or_path)
    if not path.exists():
        return f"hub:{name_or_path}"
    if (path / MANIFEST).is_file() or path.is_file():
        return fingerprint_path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        size = f.stat().st_size
        h.update(f.read_bytes() if size < (1 << 20) else str(size).encode())
    return h.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("instruct_select", "torch", "transformers", "peft", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


# --------------------------------------------------------------------------------------------
# Stages


@dataclass(frozen=True)
class Artifact:
    """What a producer hands a selector: the value, and the fingerprint a selection records."""

    value: Any
    fingerprint: str


@dataclass
class StageResult:
    path: Path
    manifest: dict
    skipped: bool


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable list of the keys whose values differ, recursing into nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, name + "."))
        elif a != b:
            out.append(f"{name}: was {a!r}, now {b!r}")
    return out


def finished_manifest(stage_dir: str | os.PathLike) -> dict | None:
    """The manifest of a finished stage folder, or None when the stage has not finished."""
    path = Path(stage_dir) / MANIFEST
    return read_json(path) if path.is_file() else None


def require_finished(stage_dir: str | os.PathLike, what: str) -> dict:
    manifest = finished_manifest(stage_dir)
    if manifest is None:
        raise ArtifactMismatchError(
            f"{stage_dir} holds no finished {what} (no {MANIFEST}); run the stage that makes it first."
        )
    return manifest


def run_stage(
    stage_dir: str | os.PathLike,
    name: str,
    settings: dict,
    inputs: dict[str, str],
    build: Callable[[Path], dict | None],
    *,
    seed: int | None = None,
    log: Callable[[str], None] = print,
    per_process: bool = False,
) -> StageResult:
    """Run ``build(stage_dir)`` unless an identical finished stage is already there.

    ``settings`` are the values that shape the output; ``inputs`` are fingerprints of what it
    reads. ``build`` writes its files into the folder (it may resume from what an interrupted
    run left) and returns extra facts for the manifest. The manifest is written last.

    Before building, ``started.json`` records the settings and inputs, so that an interrupted stage
    resumes only for the same ones: a rerun with anything different is refused, naming the
    difference, unless the command runs under ``restarting()`` (``--restart``), which starts it afresh.

    Under torch.distributed every process calls this for the same folder, builds its share, and the
    main process writes the manifest between two barriers; ``per_process=True`` is for a folder
    that belongs to this process alone (a shard), which writes its own manifest without waiting.
    """
    stage_dir = Path(stage_dir)
    wanted = {"stage": name, "settings": settings, "inputs": inputs, "seed": seed}
    old = finished_manifest(stage_dir)
    if old is not None:
        previous = {k: old.get(k) for k in wanted}
        diff = _differences(previous, wanted)
        if not diff:
            log(f"[{name}] already done in {stage_dir}; reusing it")
            return StageResult(stage_dir, old, skipped=True)
        raise ArtifactMismatchError(
            f"{stage_dir} already holds a '{old.get('stage')}' stage made with other settings:\n  "
            + "\n  ".join(diff)
            + f"\nUse another run directory, or delete {stage_dir} to redo it with the new settings."
        )
    from .distributed import barrier, is_main

    _check_interrupted(stage_dir, wanted, log)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage_dir / STARTED, wanted)
    start = time.time()
    # Under torch.distributed every process builds its share; the main one writes the manifest.
    token = CURRENT_STAGE.set(name)
    extra = build(stage_dir) or {}
    CURRENT_STAGE.reset(token)  # not on an exception: the command's error names the stage it ended in
    manifest = dict(wanted)
    manifest.update(
        outputs=extra,
        versions=package_versions(),
        seconds=round(time.time() - start, 3),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if per_process:
        _commit(stage_dir, manifest)
        return StageResult(stage_dir, manifest, skipped=False)
    barrier()
    if is_main():
        _commit(stage_dir, manifest)
    barrier()
    return StageResult(stage_dir, manifest, skipped=False)


def _commit(stage_dir: Path, manifest: dict) -> None:
    """The manifest marks the stage finished; ``started.json`` only ever describes unfinished work."""
    atomic_write_json(stage_dir / MANIFEST, manifest)
    (stage_dir / STARTED).unlink(missing_ok=True)


def _check_interrupted(stage_dir: Path, wanted: dict, log: Callable[[str], None]) -> None:
    """Refuse to resume an unfinished stage that was started with other settings or inputs."""
    started = stage_dir / STARTED
    if not started.is_file():
        return
    diff = _differences({k: read_json(started).get(k) for k in wanted}, wanted)
    if not diff:
        log(f"[{wanted['stage']}] resuming the interrupted stage in {stage_dir}")
        return
    if _RESTART.get():
        from .distributed import barrier, is_main

        log(f"[{wanted['stage']}] --restart: discarding the interrupted stage in {stage_dir}")
        if is_main():
            shutil.rmtree(stage_dir)
        barrier()
        return
    raise ArtifactMismatchError(
        f"{stage_dir} holds an interrupted '{wanted['stage']}' stage started with other settings:\n  "
        + "\n  ".join(diff)
        + "\nRerun with the settings it was started with to resume it, or add --restart to start it afresh.")
