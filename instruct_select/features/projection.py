"""Seeded random projection of per-example LoRA gradients to k dimensions, never materialised whole.

Each LoRA weight gradient G (a × b, one side the small rank r) is projected with its own seeded
Rademacher matrices: P(G) = R1ᵀ G R2, R1 (a × k1), R2 (b × k2), k1·k2 = k, with the small side kept
whole when it divides k (R1 = I). The feature is the sum over layers of vec(P(G)). Because every
layer has independent zero-mean matrices with variance 1/k1 and 1/k2 entries,

    E[<P(G), P(H)>] = <G, H>  per layer, and the cross-layer terms vanish in expectation,

so the whole map is a random projection of the concatenated gradient that preserves inner products
in expectation (tested on random vectors at the default size). Memory: a·k1 + b·k2 numbers per
layer instead of the (Σ a·b) × k dense matrix; cost: about b·k per example per layer, small next to
the backward pass.

Matrices are generated from (seed, parameter name) with a private ``torch.Generator``, so every
checkpoint, shard, process and run draws the same ones.
"""
from __future__ import annotations

import hashlib

import torch

from ..errors import ConfigError


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _rademacher(shape: tuple[int, int], seed: int, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8)
    return (signs.float() * 2 - 1) * scale


def _name_seed(seed: int, name: str, which: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{which}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class LayerwiseProjector:
    """Projects named per-example gradients {name: (B, a, b)} to (B, k)."""

    def __init__(self, shapes: dict[str, tuple[int, int]], dim: int, seed: int, device: torch.device | str = "cpu"):
        if dim < 1:
            raise ConfigError(f"projection dimension must be >= 1, got {dim}")
        self.dim = dim
        self.seed = seed
        self.device = torch.device(device)
        self.shapes = dict(shapes)
        self._plans: dict[str, tuple[bool, int, int]] = {}
        self._matrices: dict[str, tuple[torch.Tensor | None, torch.Tensor]] = {}
        for name, (a, b) in self.shapes.items():
            # Keep the smaller side whole when it divides k (LoRA's rank r usually does).
            transpose = a > b
            small = min(a, b)
            k1 = small if dim % small == 0 else _largest_divisor_at_most(dim, small)
            self._plans[name] = (transpose, k1, dim // k1)

    def matrices(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(R1 or None for identity, R2) of one layer, created on first use."""
        if name not in self._matrices:
            transpose, k1, k2 = self._plans[name]
            a, b = self.shapes[name]
            small, big = (b, a) if transpose else (a, b)
            left = None if k1 == small else _rademacher((small, k1), _name_seed(self.seed, name, "L"), k1 ** -0.5)
            right = _rademacher((big, k2), _name_seed(self.seed, name, "R"), k2 ** -0.5)
            self._matrices[name] = (
                None if left is None else left.to(self.device),
                right.to(self.device),
            )
        return self._matrices[name]

    def project_layer(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        """(B, a, b) per-example gradients of one layer -> (B, k)."""
        transpose, _, _ = self._plans[name]
        g = grads.transpose(1, 2) if transpose else grads  # (B, small, big)
        left, right = self.matrices(name)
        out = g @ right  # (B, small, k2)
        if left is not None:
            out = left.t() @ out  # (B, k1, k2)
        return out.reshape(g.shape[0], -1)

    def project(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = set(self.shapes) - set(grads)
        if missing:
            raise ConfigError(f"gradients for {sorted(missing)[:3]} are missing: model and projector disagree")
        total = None
        for name in self.shapes:
            part = self.project_layer(name, grads[name])
            total = part if total is None else total + part
        return total

    def dense_matrix(self) -> torch.Tensor:
        """The equivalent dense (Σ a·b) × k matrix, for tests on tiny layers only."""
        blocks = []
        for name, (a, b) in self.shapes.items():
            eye = torch.eye(a * b, device=self.device).reshape(a * b, a, b)
            blocks.append(self.project_layer(name, eye))
        return torch.cat(blocks, dim=0)


def normalise_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise each row (a zero row stays zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp(min=eps)
