"""The run context: what every stage of one command shares, built once and handed down.

A command (``run``, ``demo``, ``train`` ...) decides the device, the dtype, the chat template, which
shard of the work this process does, and loads the pool once; every stage below reads them from
here instead of taking them again as parameters. (What the stages report goes through ``logging``,
configured by the command line: see ``logs.py``.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..data.loading import LoadedData, load_examples
from ..distributed import Shard, local_device
from ..errors import ConfigError
from ..models.loading import resolve_dtype

STOP_POINTS = ("warmup", "features")


@dataclass(frozen=True)
class RunContext:
    """``shard``: an independent job's share (``--shard i/N``); None: this process's rank of the
    torch.distributed world (the whole data without one). ``stop_after``: end the run after the
    warmup or the gradient features (scheduler jobs). ``dtype`` "auto" is made concrete for the
    device here (``models.loading.resolve_dtype``), so every stage loads, and every manifest
    records, the dtype the run actually used."""

    device: str | None = None
    dtype: str = "float32"
    chat_template: str | None = None
    shard: Shard | None = None
    stop_after: str | None = None
    pool: LoadedData | None = None

    def __post_init__(self) -> None:
        if self.stop_after not in (None, *STOP_POINTS):
            raise ConfigError(f"stop_after must be one of {', '.join(STOP_POINTS)}, got {self.stop_after!r}")
        if self.dtype == "auto":
            object.__setattr__(self, "dtype", resolve_dtype(self.dtype, self.device))

    @classmethod
    def create(cls, *, device: str | None = "auto", pool: str | Path | LoadedData | None = None,
               **settings) -> "RunContext":
        """A context for one command: ``device`` "auto" is this process's GPU under torchrun, else
        the default; ``pool`` the loaded training data, or a path loaded here, once, with
        ``data.loading.load_examples``'s defaults (load it yourself to read it another way);
        ``settings`` the other fields (dtype, chat_template, shard, stop_after)."""
        if isinstance(pool, (str, Path)) and str(pool):
            pool = load_examples(pool)
        return cls(device=local_device() or device, pool=pool or None, **settings)

    def replace(self, **changes) -> "RunContext":
        return dataclasses.replace(self, **changes)

    @property
    def is_shard_job(self) -> bool:
        """An independent ``--shard i/N`` job (N > 1): it computes its share and stops."""
        return self.shard is not None and self.shard.count > 1

    def require_pool(self) -> LoadedData:
        if self.pool is None:
            raise ConfigError("this stage needs a pool: give the training data (pool=... or --data)")
        return self.pool
