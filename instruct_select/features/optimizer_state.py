"""LESS's Adam-preconditioned gradient feature, from a checkpoint's moments matched by name.

Γ = m' / sqrt(v' + ε), m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g²: the direction the next Adam
step would take on this one example. As in LESS's released code, ε sits inside the square root and
no bias correction is applied; β1, β2 and ε are the checkpoint optimizer's own.
"""
from __future__ import annotations

import torch

from ..errors import ArtifactMismatchError
from ..train.checkpoint import Checkpoint


def adam_feature(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                 beta1: float, beta2: float, eps: float) -> torch.Tensor:
    """Per-example Adam update direction; ``grad`` is (B, ...) and the moments broadcast over B."""
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    return m / torch.sqrt(v + eps)


class AdamMoments:
    """A checkpoint's moments for the layers we take gradients of, on the features' device."""

    def __init__(self, checkpoint: Checkpoint, names: list[str], device: torch.device | str = "cpu"):
        exp_avg, exp_avg_sq = checkpoint.moments()
        missing = [n for n in names if n not in exp_avg or n not in exp_avg_sq]
        if missing:
            raise ArtifactMismatchError(
                f"checkpoint {checkpoint.path} holds no Adam moments for {missing[0]} "
                f"({len(missing)} of {len(names)} layers): it was made with another model or LoRA setting"
            )
        self.beta1, self.beta2, self.eps = checkpoint.beta1, checkpoint.beta2, checkpoint.eps
        self.exp_avg = {n: exp_avg[n].to(device) for n in names}
        self.exp_avg_sq = {n: exp_avg_sq[n].to(device) for n in names}

    def transform(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        return adam_feature(grad, self.exp_avg[name], self.exp_avg_sq[name], self.beta1, self.beta2, self.eps)
