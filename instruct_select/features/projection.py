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

Speed: when R1 = I (LoRA's rank divides k, the usual case), the sum over layers is one matrix
product, Σ_l G_l R2_l = [G_1 … G_L] @ [R2_1; …; R2_L]: one large GEMM instead of one small one per
layer (48 on a 6-layer model with q/k/v/o adapters), which a CPU runs several times faster. The
layers whose small side has the same size form such a group; each layer's R2 is a slice of the
group's stacked matrix, so nothing is stored twice. ``project`` keeps the obvious per-layer sum,
the reference the grouped product is tested against.

Designs (``FeatureSettings.projection``):

- ``row_signs`` (the default): before R2, every entry of the oriented gradient (small × big) is
  multiplied by its own seeded random sign S (one ±1 per LoRA weight). Row i is then projected by
  diag(S_i) R2, a different matrix for every row, so the errors that rows sharing one R2 make
  together (LoRA's r rows of one layer are strongly correlated) become independent; the error of
  an inner product then falls as for a dense projection of the same k. Still unbiased (S² = 1).
  Cost: one multiply fused into the copy the fast path makes anyway, and the signs stored as
  int8 (one byte per LoRA weight: 0.1 GB for Llama-3-8B at r=128 on q/k/v/o).
- ``shared_rows``: the design before issue 20 (every row of a layer through the same R2). On real
  SmolLM2 gradients at r=128 its cosine error SD is 1.64 × a dense projection's at k=8192 and
  1.66 × at k=2048, where ``row_signs`` is 1.00 × and 1.02 × (``benchmarks/projection_fidelity.py``,
  docs/RESULTS.md); kept for reproducing older runs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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


@dataclass
class ProjectionGroup:
    """Layers projected by one matrix product: their oriented gradients (B, small, big_l), laid side
    by side in ``names`` order, times ``right`` (Σ big_l, k2), the layers' R2 stacked; ``left`` is R1
    (a group with an R1 holds one layer)."""

    names: list[str]
    small: int
    k2: int
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None  # filled on first use
    signs: torch.Tensor | None = None  # (small, width) ±1 int8, filled on first use with ``row_signs``
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # each layer's rows of ``right``

    @property
    def width(self) -> int:
        return sum(stop - start for start, stop in self.spans.values())


DESIGNS = ("row_signs", "shared_rows")


class LayerwiseProjector:
    """Projects named per-example gradients {name: (B, a, b)} to (B, k)."""

    def __init__(self, shapes: dict[str, tuple[int, int]], dim: int, seed: int, device: torch.device | str = "cpu",
                 design: str = "row_signs"):
        if dim < 1:
            raise ConfigError(f"projection dimension must be >= 1, got {dim}")
        if design not in DESIGNS:
            raise ConfigError(f"projection must be one of {', '.join(DESIGNS)}, got {design!r}")
        self.design = design
        self.dim = dim
        self.seed = seed
        self.device = torch.device(device)
        self.shapes = dict(shapes)
        self._plans: dict[str, tuple[bool, int, int]] = {}
        for name, (a, b) in self.shapes.items():
            # Keep the smaller side whole when it divides k (LoRA's rank r usually does).
            transpose = a > b
            small = min(a, b)
            k1 = small if dim % small == 0 else _largest_divisor_at_most(dim, small)
            self._plans[name] = (transpose, k1, dim // k1)
        self.groups: list[ProjectionGroup] = []
        self._group_of: dict[str, ProjectionGroup] = {}
        by_small: dict[int, ProjectionGroup] = {}
        for name, (transpose, k1, k2) in self._plans.items():
            small, big = sorted(self.shapes[name])
            if k1 == small and small in by_small:
                group = by_small[small]
            else:
                group = ProjectionGroup([], small, k2)
                self.groups.append(group)
                if k1 == small:
                    by_small[small] = group
            offset = group.width
            group.names.append(name)
            group.spans[name] = (offset, offset + big)
            self._group_of[name] = group

    def _fill(self, group: ProjectionGroup) -> None:
        right = torch.empty((group.width, group.k2))
        # int8: a quarter of float32's memory, and multiplying by it costs the same
        signs = torch.empty((group.small, group.width), dtype=torch.int8) if self.design == "row_signs" else None
        for name in group.names:
            _, k1, k2 = self._plans[name]
            start, stop = group.spans[name]
            right[start:stop] = _rademacher((stop - start, k2), _name_seed(self.seed, name, "R"), k2 ** -0.5)
            if signs is not None:
                seed = _name_seed(self.seed, name, "S")
                signs[:, start:stop] = _rademacher((group.small, stop - start), seed, 1.0).to(torch.int8)
            if k1 != group.small:
                left = _rademacher((group.small, k1), _name_seed(self.seed, name, "L"), k1 ** -0.5)
                group.left = left.to(self.device)
        group.right = right.to(self.device)
        group.signs = None if signs is None else signs.to(self.device)

    def matrices(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(R1 or None for identity, R2) of one layer, created on first use."""
        group = self._group_of[name]
        if group.right is None:
            self._fill(group)
        start, stop = group.spans[name]
        return group.left, group.right[start:stop]

    def _signs(self, name: str) -> torch.Tensor | None:
        """One layer's (small, big) signs, or None for ``shared_rows``."""
        group = self._group_of[name]
        if group.right is None:
            self._fill(group)
        start, stop = group.spans[name]
        return None if group.signs is None else group.signs[:, start:stop]

    def orient(self, name: str, grads: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, a, b) gradients of one layer as (B, small, big), with the design's signs applied;
        written into ``out`` when given (the fast path's side-by-side array: one pass over memory)."""
        transpose, _, _ = self._plans[name]
        view = grads.transpose(1, 2) if transpose else grads
        signs = self._signs(name)
        if signs is None:
            return view if out is None else out.copy_(view)
        return torch.mul(view, signs, out=out) if out is not None else view * signs

    def project_layer(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        """(B, a, b) per-example gradients of one layer -> (B, k)."""
        g = self.orient(name, grads)  # (B, small, big)
        left, right = self.matrices(name)
        out = g @ right  # (B, small, k2)
        if left is not None:
            out = left.t() @ out  # (B, k1, k2)
        return out.reshape(g.shape[0], -1)

    def project_group(self, group: ProjectionGroup, oriented: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Layers of ``group`` whose oriented gradients (``orient``, signs applied) lie side by side in
        ``oriented`` (B, small, w), starting at the group's column ``first`` -> the sum of their
        projections, (B, k)."""
        if group.right is None:
            self._fill(group)
        batch, _, width = oriented.shape
        rows = oriented.reshape(batch * group.small, width)  # a view, also of a column slice of a wider array
        out = rows @ group.right[first:first + width]  # one GEMM over all these layers
        if group.left is not None:
            out = group.left.t() @ out.reshape(batch, group.small, -1)
        return out.reshape(batch, -1)

    def project(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """The reference: each layer projected on its own, summed."""
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
