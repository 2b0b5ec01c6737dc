"""Per-epoch checkpoints: trainable weights plus AdamW moments keyed by parameter name.

LESS needs, for each warmup epoch e, the LoRA weights, Adam's first and second moments (exp_avg,
exp_avg_sq) and the epoch's mean learning rate. Moments are stored by parameter *name*, never by
position, so they are matched to the right tensor whatever order a later process builds its
parameter list in. A checkpoint folder appears whole (written aside, then renamed) or not at all.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..artifacts import atomic_path
from ..errors import ArtifactMismatchError
from ..layout import TrainFolders

INFO = "checkpoint.json"
MOMENTS = "optimizer_moments.safetensors"
WEIGHTS = "trainable_weights.safetensors"
RNG = "rng_state.safetensors"


@dataclass
class Checkpoint:
    path: Path
    epoch: int
    mean_lr: float
    beta1: float
    beta2: float
    eps: float
    step: int
    extra: dict = field(default_factory=dict)

    def moments(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(exp_avg, exp_avg_sq), each keyed by parameter name."""
        tensors = load_file(str(self.path / MOMENTS))
        exp_avg = {k[len("exp_avg/"):]: v for k, v in tensors.items() if k.startswith("exp_avg/")}
        exp_avg_sq = {k[len("exp_avg_sq/"):]: v for k, v in tensors.items() if k.startswith("exp_avg_sq/")}
        return exp_avg, exp_avg_sq

    def rng_state(self) -> torch.Tensor | None:
        """The CPU random-number state after this epoch (dropout), for an exact resume."""
        path = self.path / RNG
        return load_file(str(path))["cpu"] if path.is_file() else None

    def weights(self) -> dict[str, torch.Tensor]:
        """Trainable weights keyed by parameter name (the names of ``model.named_parameters()``)."""
        return load_file(str(self.path / WEIGHTS))


def save_checkpoint(path: Path, model, optimizer, facts: dict) -> Checkpoint:
    """Write the trainable weights of ``model``, ``optimizer``'s (AdamW) moments by parameter name,
    the CPU random state and ``checkpoint.json`` into the folder ``path`` (whole or not at all).

    ``facts``: the epoch's ``epoch`` (1-based), ``mean_lr`` (its mean learning rate) and ``step``
    (optimizer steps so far), plus any further facts kept in ``checkpoint.json`` (``mean_loss``).
    Returns the checkpoint as read back."""
    missing = [key for key in ("epoch", "mean_lr", "step") if key not in facts]
    if missing:
        raise ValueError(f"save_checkpoint needs the facts {missing}")
    epoch, mean_lr, step = facts["epoch"], facts["mean_lr"], facts["step"]
    extra = {k: v for k, v in facts.items() if k not in ("epoch", "mean_lr", "step")}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    tensors: dict[str, torch.Tensor] = {}
    for name, param in named:
        state = optimizer.state.get(param, {})
        if "exp_avg" not in state:
            raise RuntimeError(f"optimizer holds no moments for {name}: was it stepped?")
        tensors[f"exp_avg/{name}"] = state["exp_avg"].detach().float().cpu().contiguous()
        tensors[f"exp_avg_sq/{name}"] = state["exp_avg_sq"].detach().float().cpu().contiguous()
    info = {
        "epoch": epoch, "mean_lr": mean_lr, "beta1": beta1, "beta2": beta2,
        "eps": group["eps"], "weight_decay": group.get("weight_decay", 0.0), "step": step,
        "parameters": [n for n, _ in named], **(extra or {}),
    }
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file({n: p.detach().cpu().contiguous() for n, p in named}, str(tmp / WEIGHTS))
        save_file(tensors, str(tmp / MOMENTS))
        save_file({"cpu": torch.get_rng_state()}, str(tmp / RNG))
        (tmp / INFO).write_text(json.dumps(info, indent=2) + "\n")
    return load_checkpoint(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not (path / INFO).is_file():
        raise ArtifactMismatchError(f"{path} is not a finished checkpoint (no {INFO})")
    info = json.loads((path / INFO).read_text())
    known = {"epoch", "mean_lr", "beta1", "beta2", "eps", "step"}
    return Checkpoint(path, info["epoch"], info["mean_lr"], info["beta1"], info["beta2"],
                      info["eps"], info["step"], {k: v for k, v in info.items() if k not in known})


def list_checkpoints(train_dir: str | Path) -> list[Checkpoint]:
    """The finished per-epoch checkpoints of a training run, in epoch order."""
    root = TrainFolders(Path(train_dir)).checkpoints
    found = [load_checkpoint(p) for p in sorted(root.glob("epoch-*")) if (p / INFO).is_file()]
    return sorted(found, key=lambda c: c.epoch)


def restore_optimizer(optimizer, named: list[tuple[str, torch.nn.Parameter]], checkpoint: Checkpoint) -> None:
    """Put a checkpoint's moments and step back into a fresh AdamW, matched by parameter name."""
    exp_avg, exp_avg_sq = checkpoint.moments()
    for name, param in named:
        if name not in exp_avg:
            raise ArtifactMismatchError(f"checkpoint {checkpoint.path} holds no moments for {name}")
        optimizer.state[param] = {
            "step": torch.tensor(float(checkpoint.step)),
            "exp_avg": exp_avg[name].to(param.device, param.dtype),
            "exp_avg_sq": exp_avg_sq[name].to(param.device, param.dtype),
        }


def load_weights_into(model, checkpoint: Checkpoint) -> None:
    """Copy a checkpoint's trainable weights into ``model``, matched by name; all must match."""
    weights = checkpoint.weights()
    params = dict(model.named_parameters())
    missing = sorted(set(weights) - set(params))
    if missing:
        raise ArtifactMismatchError(
            f"checkpoint {checkpoint.path} has weights this model lacks (e.g. {missing[0]}); "
            "it was made with another model or LoRA setting"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
