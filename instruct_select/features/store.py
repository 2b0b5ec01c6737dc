"""A resumable feature store keyed by example id: memory-mapped rows, a done-mask, a manifest.

Layout of a store folder:

    ids.json        the row order: one id per row
    meta.json       what made the rows (model, checkpoint, projection seed and size, transform, dtype,
                    data fingerprint); reopening with other settings is refused, naming the setting
    features.npy    (N, k) float16 or float32, memory-mapped
    done.npy        (N,) bool: rows written so far

Rows are written and flushed before their done flags, so an interrupted extraction resumes from
the done-mask and ends with the same array as an uninterrupted one.
"""
from __future__ import annotations

import json
import queue
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from ..artifacts import allocate_npy, atomic_write_json, differences, fingerprint_json
from ..errors import ArtifactMismatchError, ConfigError

DTYPES = {"float16": np.float16, "float32": np.float32}


class FeatureStore:
    def __init__(self, path: Path, ids: list[str], meta: dict, features: np.memmap, done: np.memmap):
        self.path, self.ids, self.meta = path, ids, meta
        self.features, self.done = features, done
        self.row_of = {id_: i for i, id_ in enumerate(ids)}

    @classmethod
    def open_or_create(cls, path: str | Path, ids: list[str], dim: int, dtype: str, meta: dict) -> "FeatureStore":
        path = Path(path)
        if dtype not in DTYPES:
            raise ConfigError(f"feature dtype must be float16 or float32, got {dtype!r}")
        if len(set(ids)) != len(ids):
            raise ConfigError("feature store ids must be unique")
        meta = {**meta, "dim": dim, "dtype": dtype, "rows": len(ids)}
        if (path / "meta.json").is_file():
            old = json.loads((path / "meta.json").read_text())
            diff = differences(old, meta)
            if diff:
                raise ArtifactMismatchError(
                    f"{path} holds features made with other settings:\n  " + "\n  ".join(diff)
                    + f"\nDelete {path} or use another run directory."
                )
            if json.loads((path / "ids.json").read_text()) != ids:
                raise ArtifactMismatchError(f"{path} holds features for other examples; delete it to recompute")
            return cls.open(path, writable=True)
        path.mkdir(parents=True, exist_ok=True)
        allocate_npy(path / "features.npy", DTYPES[dtype], (len(ids), dim))
        allocate_npy(path / "done.npy", np.bool_, (len(ids),))
        atomic_write_json(path / "ids.json", ids)
        atomic_write_json(path / "meta.json", meta)  # last: its presence means the arrays exist
        return cls.open(path, writable=True)

    @classmethod
    def open(cls, path: str | Path, writable: bool = False) -> "FeatureStore":
        path = Path(path)
        if not (path / "meta.json").is_file():
            raise ArtifactMismatchError(f"{path} is not a feature store (no meta.json)")
        mode = "r+" if writable else "r"
        return cls(path, json.loads((path / "ids.json").read_text()), json.loads((path / "meta.json").read_text()),
                   np.load(path / "features.npy", mmap_mode=mode), np.load(path / "done.npy", mmap_mode=mode))

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def pending_ids(self) -> list[str]:
        return [self.ids[i] for i in np.flatnonzero(~np.asarray(self.done))]

    def write(self, ids: list[str], values: np.ndarray) -> None:
        rows = np.array([self.row_of[i] for i in ids])
        self.features[rows] = values.astype(self.features.dtype)
        self.features.flush()
        self.done[rows] = True
        self.done.flush()

    def complete(self) -> bool:
        return bool(np.all(self.done))

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32 (the only rows read into memory)."""
        return np.asarray(self.features[start:stop], dtype=np.float32)

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows [start, stop) as float32 into ``out`` (a reused buffer of at least that many rows);
        returns its filled part, equal to ``block(start, stop)``.

        For scoring, which streams the whole store through a matrix product: float16 is widened by
        torch's vectorised cast, about five times numpy's on this project's CPUs (numpy's cast was
        a third of scoring's time), straight from the memory-mapped file into ``out``.
        """
        rows = out[: stop - start]
        source = np.asarray(self.features[start:stop])
        if source.dtype == np.float32:
            np.copyto(rows, source)
            return rows
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")  # it is only read
            torch.from_numpy(rows).copy_(torch.from_numpy(source))
        return rows


class BackgroundWriter:
    """``store.write`` on a thread of its own, so that computing the next batch overlaps writing
    this one (each write flushes to disk: milliseconds, as long as a small model's batch).

    Use as a context manager: leaving it waits for every queued write, then re-raises a write's
    error if one failed; so an interrupted extraction still records every row it computed, and a
    rerun resumes after them. At most ``depth`` batches wait, which bounds the memory they hold.
    """

    def __init__(self, store: FeatureStore, depth: int = 4):
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feature-store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:  # after a failure, drain without writing
                try:
                    self.store.write(*job)
                except BaseException as err:  # handed to the caller's thread
                    self._error = err

    def write(self, ids: list[str], values: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((ids, values))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
            return
        try:
            self.close()
        except BaseException:
            pass  # the exception already leaving the block is the one to report


def ids_fingerprint(ids: list[str]) -> str:
    return fingerprint_json(ids)


def merge_shard_stores(out: str | Path, shard_paths: list[Path]) -> FeatureStore:
    """Merge the stores of shards 0..N-1 (each holding ids[i::N]) into one store at ``out``.

    Refuses, saying which, when a shard is missing or unfinished, when shards were made with
    other settings, or when the merged ids are not exactly the ids the shards were cut from.
    """
    stores = [FeatureStore.open(p) for p in shard_paths]
    if not stores:
        raise ArtifactMismatchError(f"no shard stores to merge into {out}")
    count = stores[0].meta.get("shard_count")
    by_index = {s.meta.get("shard_index"): s for s in stores}
    missing = [i for i in range(count or 0) if i not in by_index]
    if count is None or missing or len(stores) != count:
        raise ArtifactMismatchError(
            f"cannot merge {out}: expected shards 0..{(count or 1) - 1} of {count}, "
            f"missing {missing or 'none'}, found {sorted(by_index)}; run the missing shards first"
        )
    base = {k: v for k, v in stores[0].meta.items() if k not in ("shard_index", "rows")}
    for store in stores:
        other = {k: v for k, v in store.meta.items() if k not in ("shard_index", "rows")}
        diff = differences(base, other)
        if diff:
            raise ArtifactMismatchError(f"shard {store.path} was made with other settings: " + "; ".join(diff))
        if not store.complete():
            raise ArtifactMismatchError(f"shard {store.path} is unfinished ({len(store.pending_ids())} rows left); rerun it")
    total = sum(len(s.ids) for s in stores)
    ids: list[str] = [""] * total
    for index, store in by_index.items():
        ids[index::count] = store.ids
    if len(set(ids)) != total or ids_fingerprint(ids) != base.get("ids_fingerprint"):
        raise ArtifactMismatchError(f"the shards of {out} do not cover the expected ids exactly once")
    meta = {k: v for k, v in base.items() if k not in ("shard_count", "ids_fingerprint", "dim", "dtype")}
    merged = FeatureStore.open_or_create(out, ids, stores[0].dim, base["dtype"], meta)
    for store in by_index.values():
        for start in range(0, len(store.ids), 8192):
            stop = min(len(store.ids), start + 8192)
            merged.write(store.ids[start:stop], store.block(start, stop))
    return merged
