"""Run directories that explain themselves: manifests, fingerprints, atomic writes, stage skipping.

A stage writes its outputs into its own folder of the run directory and, last, a ``manifest.json``
recording the settings, the fingerprints of its inputs, the package versions, the seed and the time
taken. The manifest is the commit marker: a folder without one is unfinished and no reader trusts
it. Rerunning a stage with the same settings and inputs skips it; with different ones it is
refused, naming the setting that differs.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .distributed import barrier, is_main
from .errors import ArtifactMismatchError, ConfigError, FolderBusyError, InstructSelectError
from .logs import stage_lines

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STARTED = "started.json"  # what an unfinished stage folder was started with (settings, inputs)
# The stage folder's OS lock (flock): one job per folder. The kernel drops it when its holder exits,
# however it exits (SIGKILL too), so a started.json whose folder nobody holds was left by a dead job.
LOCK = ".lock"
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


def allocate_npy(path: str | os.PathLike, dtype: Any, shape: tuple[int, ...]) -> None:
    """Create an ``.npy`` file of ``shape`` to be filled through a memmap, with its disk space reserved.

    A memmap's writes never return an error: on a full disk the process dies of SIGBUS mid-stage.
    Reserving every block here turns that into an ``OSError`` (errno 28) before any work, which the
    command line reports in one line.
    """
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
    fd = os.open(path, os.O_RDWR)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


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


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable list of the keys whose values differ, recursing into nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(differences(a, b, name + "."))
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
) -> StageResult:
    """Run ``build(stage_dir)`` unless an identical finished stage is already there.

    ``stage_dir``: the stage's folder; ``name``: the stage's name (recorded, and shown in the log
    lines); ``settings`` are the values that shape the output; ``inputs`` are fingerprints of what it
    reads. ``build`` writes its files into the folder (it may resume from what an interrupted
    run left) and returns extra facts for the manifest. The manifest is written last. ``seed``: the
    seed the stage used (recorded), or None. Returns the folder, its manifest and whether it was
    reused (``skipped``). One INFO line is logged when the build starts and one when it ends, with
    its time in seconds; a reused stage logs one line.

    Before building, ``started.json`` records the settings and inputs, so that an interrupted stage
    resumes only for the same ones: a rerun with anything different is refused, naming the
    difference, unless the command runs under ``restarting()`` (``--restart``), which starts it afresh.

    Under torch.distributed every process calls this for the same folder, builds its share, and the
    main process writes the manifest between two barriers; :func:`run_shard_stage` is for a folder
    that belongs to this process alone (a shard), which writes its own manifest without waiting.
    """
    return _run_stage(Path(stage_dir), {"stage": name, "settings": settings, "inputs": inputs, "seed": seed},
                      build, per_process=False)


def run_shard_stage(stage_dir: str | os.PathLike, name: str, settings: dict, inputs: dict[str, str],
                    build: Callable[[Path], dict | None]) -> StageResult:
    """:func:`run_stage` for a folder that belongs to this process alone (one shard of a sharded
    pass): it takes the folder's lock and writes its own manifest without waiting for the other
    processes. Arguments and result as :func:`run_stage`'s (no seed)."""
    return _run_stage(Path(stage_dir), {"stage": name, "settings": settings, "inputs": inputs, "seed": None},
                      build, per_process=True)


def _run_stage(stage_dir: Path, wanted: dict, build: Callable[[Path], dict | None], *,
               per_process: bool) -> StageResult:
    name = wanted["stage"]
    # A finished folder is only read: reused or refused without its lock, so that jobs reading it at
    # once never refuse one another.
    done = _reuse_finished(stage_dir, wanted)
    if done is not None:
        return done
    # One job per folder: the main process (or a shard's own process) holds the folder's lock from
    # before it reads the unfinished folder's state until the stage ends, so a live job's folder is
    # never taken for an interrupted one.
    locking = per_process or is_main()
    created = not stage_dir.exists()
    with (stage_lock(stage_dir) if locking else _no_lock()):
        done = _reuse_finished(stage_dir, wanted)  # finished by another job since the look above
        if done is not None:
            return done
        resuming = _check_interrupted(stage_dir, wanted)
        stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stage_dir / STARTED, {**wanted, "pid": os.getpid(), "host": socket.gethostname()})
        start = time.time()
        # Under torch.distributed every process builds its share; the main one writes the manifest.
        token = CURRENT_STAGE.set(name)
        try:
            with stage_lines(f"[{name}] {stage_dir}", logger):
                extra = build(stage_dir) or {}
        except InstructSelectError:
            # A user's mistake found while building: nothing here is worth resuming, and a marker
            # left behind would refuse the corrected command as "started with other settings".
            if not resuming and locking:
                _discard(stage_dir, created)
            raise
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


def _reuse_finished(stage_dir: Path, wanted: dict) -> StageResult | None:
    """The finished stage in ``stage_dir`` when it was made with ``wanted``; refused by name when it
    was made with anything else; None when the folder holds no finished stage."""
    old = finished_manifest(stage_dir)
    if old is None:
        return None
    diff = differences({k: old.get(k) for k in wanted}, wanted)
    if not diff:
        logger.info("[%s] already done in %s; reusing it", wanted["stage"], stage_dir)
        return StageResult(stage_dir, old, skipped=True)
    raise ArtifactMismatchError(
        f"{stage_dir} already holds a '{old.get('stage')}' stage made with other settings:\n  "
        + "\n  ".join(diff)
        + f"\nUse another run directory, or delete {stage_dir} to redo it with the new settings."
    )


@contextmanager
def stage_lock(stage_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``stage_dir``'s exclusive OS lock (``fcntl.flock`` on ``stage_dir/.lock``) for the block.

    A second job asking for a held folder is refused at once, naming the process that holds it. The
    lock file is removed when the folder is finished (it holds a manifest), so finished folders hold
    only their outputs (and are read without the lock).
    """
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(stage_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusyError(f"{stage_dir} is in use by another job ({holder}); one job writes a folder at a "
                                  "time: wait for that job to end (or stop it), or give another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
        if (stage_dir / MANIFEST).is_file():
            (stage_dir / LOCK).unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _empty(stage_dir: Path) -> None:
    """Delete what a folder holds but its lock (which the caller holds)."""
    for child in stage_dir.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _discard(stage_dir: Path, created: bool) -> None:
    """Undo a stage that failed on a user's mistake: the folder when this job made it, else its marker
    and lock file (the folder's other files were there before)."""
    if created:
        shutil.rmtree(stage_dir, ignore_errors=True)
    else:
        (stage_dir / STARTED).unlink(missing_ok=True)
        (stage_dir / LOCK).unlink(missing_ok=True)


def _commit(stage_dir: Path, manifest: dict) -> None:
    """The manifest marks the stage finished; ``started.json`` only ever describes unfinished work."""
    atomic_write_json(stage_dir / MANIFEST, manifest)
    (stage_dir / STARTED).unlink(missing_ok=True)


def _check_interrupted(stage_dir: Path, wanted: dict) -> bool:
    """Refuse to resume an unfinished stage that was started with other settings or inputs; True
    when the folder holds one started with these (resumed)."""
    started = stage_dir / STARTED
    if not started.is_file():
        return False
    diff = differences({k: read_json(started).get(k) for k in wanted}, wanted)
    if not diff:
        logger.info("[%s] resuming the interrupted stage in %s", wanted["stage"], stage_dir)
        return True
    if _RESTART.get():
        logger.info("[%s] --restart: discarding the interrupted stage in %s", wanted["stage"], stage_dir)
        if is_main():
            _empty(stage_dir)
        barrier()
        return False
    raise ArtifactMismatchError(
        f"{stage_dir} holds an interrupted '{wanted['stage']}' stage started with other settings:\n  "
        + "\n  ".join(diff)
        + "\nRerun with the settings it was started with to resume it, or add --restart to start it afresh.")


# --------------------------------------------------------------------------------------------
# Output paths: checked before any work, for every command


def check_output_path(name: str, out: str | os.PathLike | None, inputs: dict[str, Any], *,
                      kind: str = "folder") -> None:
    """Refuse, before any work, an output that could destroy an input or cannot be written.

    ``name``: how the user gave the output (``--out``, ``run_dir``); ``inputs``: the command's inputs
    by the name the user gave them (pool, selection, validation, tests, model, config); a missing
    one or a hub id is skipped (its own check names it). The output may not be, hold or lie inside
    an input; a folder output (``kind``) may not be an existing file, nor lie below one.
    """
    if out is None or not str(out):
        if name:
            raise ConfigError(f"{name} is empty; give the folder the command writes into")
        return
    target = Path(out).expanduser().absolute()
    resolved = target.resolve()
    for label, given in inputs.items():
        if given is None or not str(given) or not Path(given).expanduser().exists():
            continue
        source = Path(given).expanduser().resolve()
        relation = ("is" if resolved == source else "holds" if source.is_relative_to(resolved)
                    else "lies inside" if resolved.is_relative_to(source) else None)
        if relation:
            raise ConfigError(f"{name} {out} {relation} the {label} {given}; a command never writes over or into "
                              f"its inputs: give {name} a path apart from them")
    for parent in [target, *target.parents]:
        if parent.exists():
            if parent != target and not parent.is_dir():
                raise ConfigError(f"{name} {out}: {parent} is a file, so nothing can be written below it; give "
                                  f"{name} a path in a folder")
            break
    if kind == "folder" and target.exists() and not target.is_dir():
        raise ConfigError(f"{name} {out} is a file, and the command writes a folder there; give a folder path "
                          "(or move the file away)")
    if kind == "file" and target.is_dir():
        raise ConfigError(f"{name} {out} is a folder, and the command writes one file there; give a file path "
                          f"such as {Path(out) / 'selected.jsonl'}")
