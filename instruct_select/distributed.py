"""torch.distributed helpers: who am I, which examples are mine, and the few collectives we use.

The same code runs single-process (rank 0 of 1) and under ``torchrun`` / ``accelerate launch``
(gloo on CPU, NCCL on GPU). Independent jobs launched by a scheduler use ``--shard i/N`` instead:
the same split of examples, no collectives, and a ``merge`` step afterwards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count} is not valid: need 0 <= i < N")

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """'i/N' (0-based index i of N shards); None means the whole data set."""
        if not text:
            return cls()
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard {text!r} must look like i/N, e.g. 0/4") from None
        return cls(index, count)

    def take(self, items: list) -> list:
        """This shard's items: every count-th one starting at index (balanced lengths)."""
        return items[self.index::self.count]

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_from_environment() -> bool:
    """Join the process group torchrun describes in the environment; False when not launched so."""
    if is_distributed():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group(backend=backend)
    return True


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def process_shard() -> Shard:
    return Shard(rank(), world_size())


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every process, in place (a no-op in a single process)."""
    if is_distributed():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def local_device() -> str | None:
    """The device for this process: its own GPU under torchrun with CUDA, else the default."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return None
