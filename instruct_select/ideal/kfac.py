"""A compact K-FAC / EK-FAC over chosen linear layers: factors, eigenbases, inverse products.

For a linear layer y = x Wᵀ (W: out × in) the gradient of example i's loss is
∇W L_i = Σ_t g_t a_tᵀ, with a_t the layer's input and g_t = ∂L_i/∂y_t at position t. With W
flattened row by row (vec(W) = W.flatten()), vec(g aᵀ) = g ⊗ a, so the Fisher of the mean
per-example loss is approximated by

    F ≈ G ⊗ A,   A = Σ_{i,t} a aᵀ / (number of counted tokens),   G = Σ_i T_i Σ_t g gᵀ / (number of examples)

(K-FAC "expand" for weights shared across positions: cross-position terms are dropped). T_i is
example i's number of labelled tokens: its loss is a token MEAN, whose gradient is 1/T_i of a
token's and whose Gauss-Newton Hessian is (1/T_i) Σ_t J_tᵀ∇²ℓ_t J_t = T_i·E[∇L_i ∇L_iᵀ]; the
factor makes the Fisher approximate the Hessian of the training loss (every example weighing the
same, as in training) rather than 1/T_i of it. Without it K-FAC's influences came out about ten
times the exact ones on a tiny model (same signs; see tests/test_ideal.py). Counted
tokens are the response-relevant ones: real (not padding) tokens up to the last position that
predicts a labelled token. Positions after it carry no gradient; the prompt does (through
attention), so it is counted, and nothing is cut at a fixed position.

With A = Q_A Λ_A Q_Aᵀ and G = Q_G Λ_G Q_Gᵀ, (G ⊗ A + λI)⁻¹ vec(V) is

    Q_G [ (Q_Gᵀ V Q_A) / (λ_G λ_Aᵀ + λ) ] Q_Aᵀ

— a division by the eigenvalues (the inverse), never a multiplication. EK-FAC replaces λ_G λ_Aᵀ
by the mean over examples of T_i·(Q_Gᵀ ∇W L_i Q_A)², elementwise: the exact diagonal of the
(T_i-scaled) per-example Fisher in the Kronecker eigenbasis.

Fisher: ``"sampled"`` (the true Fisher) backpropagates the loss of labels sampled from the model's own predictive
distribution at the labelled positions (the Gauss-Newton matrix of cross-entropy in expectation;
kronfluence's default); ``"empirical"`` uses the data's labels (IDEAL's public code). Sampling is
seeded per example id, so it does not depend on batching or sharding.

Every statistic is a sum with its count; with torch.distributed initialised, each process takes a
shard of the examples (``shard``) and the sums are all-reduced, so every rank's data counts.
"""
from __future__ import annotations

import fnmatch
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..data.batching import collate, token_budget_batches
from ..data.chat import IGNORE_INDEX, TokenizedExample
from ..distributed import all_reduce_sum_, process_shard
from ..errors import ConfigError
from ..loss import per_example_loss

Stats = dict[str, dict[str, torch.Tensor]]  # layer name -> statistic name -> sum (counts too)


# ------------------------------------------------------------------------------------------
# Layers, processes, batches


def select_layers(model: torch.nn.Module, patterns: list[str]) -> dict[str, torch.nn.Linear]:
    """The nn.Linear modules whose name equals, ends with ``.pattern``, or globs a pattern."""
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    chosen = {n: m for n, m in linear.items()
              if any(n == p or n.endswith("." + p) or fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not chosen:
        kinds = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ConfigError(f"layers {patterns} match no linear layer of this model; its linear "
                          f"layers are named {kinds} (e.g. {next(iter(linear), 'none')})")
    return chosen


@contextmanager
def gradients_through(modules: dict[str, torch.nn.Linear], model: torch.nn.Module) -> Iterator[None]:
    """Only the chosen weights require grad while inside (so layer outputs carry a graph);
    every parameter's flag is restored afterwards."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    for module in modules.values():
        module.weight.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def shard(items: list) -> list:
    """This process's share of ``items`` (all of them when not distributed)."""
    return process_shard().take(items)


def all_reduce_(stats: Stats) -> Stats:
    """Sum every statistic over processes, in place (a no-op in a single process)."""
    for layer in stats.values():
        for tensor in layer.values():
            all_reduce_sum_(tensor)
    return stats


def merge(*parts: Stats) -> Stats:
    """What the all-reduce does across processes: the elementwise sum of shards' statistics."""
    return {name: {k: sum(p[name][k] for p in parts) for k in parts[0][name]} for name in parts[0]}


# ------------------------------------------------------------------------------------------
# One batch: inputs, output gradients and the token mask


def _seed_of(seed: int, id_: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{id_}".encode()).digest()[:8], "little") >> 1


def sample_labels(logits: torch.Tensor, labels: torch.Tensor, ids: list[str], seed: int) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution at the labelled positions."""
    sampled = labels.clone()
    predicting = labels[:, 1:] != IGNORE_INDEX
    for row, id_ in enumerate(ids):
        positions = predicting[row].nonzero().squeeze(1)
        # One row at a time: a float32 softmax over (batch, time, 128k vocabulary) would not fit.
        probs = torch.softmax(logits[row, positions].detach().float(), dim=-1)
        generator = torch.Generator(device=probs.device).manual_seed(_seed_of(seed, id_))
        draw = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        sampled[row, positions + 1] = draw.to(sampled.dtype)
    return sampled


def relevant_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) 1.0 on real tokens up to each row's last position that predicts a label."""
    labels = batch["labels"]
    predicting = torch.zeros_like(labels, dtype=torch.bool)
    predicting[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    positions = torch.arange(labels.shape[1]).expand_as(labels)
    last = torch.where(predicting, positions, -1).max(dim=1, keepdim=True).values
    return ((positions <= last) & (batch["attention_mask"] == 1)).float()


def label_counts(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) number of labelled (predicted) tokens per row: T_i in the Fisher's scale."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum(dim=1).float()


def batch_io(model, batch: dict[str, torch.Tensor], modules: dict[str, torch.nn.Linear], *,
             labels: str = "data", ids: list[str] | None = None, seed: int = 0):
    """Per-example losses and, per layer, (input a, ∂(Σ losses)/∂output g), both (B, T, ·).

    ``labels="sampled"`` backpropagates labels drawn from the model (the true Fisher). Row b of g
    is example b's own gradient: examples do not interact.
    """
    device = next(model.parameters()).device
    records: dict[str, tuple] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: records.__setitem__(n, (inp[0].detach(), out)))
               for n, m in modules.items()]
    try:
        with gradients_through(modules, model):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            target = batch["labels"].to(device)
            if labels == "sampled":
                target = sample_labels(logits, target, ids or [], seed)
            losses = per_example_loss(logits, target)
            names = list(modules)
            grads = torch.autograd.grad(losses.sum(), [records[n][1] for n in names], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    io = {n: (records[n][0], torch.zeros_like(records[n][1]) if g is None else g.detach())
          for n, g in zip(names, grads)}
    return losses.detach(), io


@dataclass
class PassSettings:
    """How the statistics passes batch and label their data."""

    pad_id: int
    token_budget: int = 4096
    batch_size: int = 16
    fisher: str = "sampled"  # "sampled" (the true Fisher) | "empirical"
    seed: int = 0

    @property
    def labels(self) -> str:
        return "sampled" if self.fisher == "sampled" else "data"


def for_each_batch(model, items: list[TokenizedExample], modules, cfg: PassSettings, visit: Callable, *,
                   labels: str = "data") -> None:
    """Call ``visit(batch_items, losses, io, batch)`` for each batch of ``items``; ``labels``
    "sampled" draws them from the model (seeded by ``cfg.seed``), "data" uses the data's."""
    for indices in token_budget_batches(items, cfg.token_budget, cfg.batch_size):  # no seed: sorted, deterministic
        chosen = [items[i] for i in indices]
        batch = collate(chosen, cfg.pad_id)
        losses, io = batch_io(model, batch, modules, labels=labels, ids=[x.id for x in chosen], seed=cfg.seed)
        visit(chosen, losses, io, batch)


# ------------------------------------------------------------------------------------------
# Factors, eigenbases and the inverse


def new_factor_stats(modules: dict[str, torch.nn.Linear]) -> Stats:
    """Zero sums for every layer up front, so a process with no examples still all-reduces."""
    stats = {}
    for name, module in modules.items():
        device, (out_f, in_f) = module.weight.device, module.weight.shape
        stats[name] = {"a_sum": torch.zeros(in_f, in_f, device=device),
                       "a_count": torch.zeros((), dtype=torch.float64, device=device),
                       "g_sum": torch.zeros(out_f, out_f, device=device),
                       "g_count": torch.zeros((), dtype=torch.float64, device=device)}
    return stats


def accumulate_factors(stats: Stats, io, batch, weights: torch.Tensor) -> None:
    """Add one batch's Σ w·a aᵀ (over relevant tokens), token count, Σ w·g gᵀ and example count."""
    for name, (a, g) in io.items():
        s = stats[name]
        w = weights.to(a.device).float()
        mask = relevant_tokens(batch).to(a.device) * w[:, None]
        a, g = a.float(), g.float()
        s["a_sum"] += torch.einsum("bti,btj->ij", a * mask[..., None], a)
        s["a_count"] += mask.sum().double()
        scale = w * label_counts(batch).to(g.device)  # T_i: see the module docstring
        s["g_sum"] += torch.einsum("bto,btp->op", g * scale[:, None, None], g)
        s["g_count"] += w.sum().double()


@dataclass
class KronEigen:
    """One layer's eigenbases; ``diag`` (out × in) is EK-FAC's refit eigenvalues, or None."""

    q_a: torch.Tensor
    l_a: torch.Tensor
    q_g: torch.Tensor
    l_g: torch.Tensor
    diag: torch.Tensor | None = None

    def eigenvalues(self) -> torch.Tensor:
        """The (out × in) eigenvalues of the layer's Fisher block in the Kronecker eigenbasis."""
        return self.diag if self.diag is not None else torch.outer(self.l_g, self.l_a)


def eigenbases(stats: Stats) -> dict[str, KronEigen]:
    """A = a_sum / a_count, G = g_sum / g_count, each eigendecomposed (in float64 for accuracy)."""
    out = {}
    for name, s in stats.items():
        if float(s["a_count"]) == 0 or float(s["g_count"]) == 0:
            raise ConfigError(f"layer {name}: no token or example reached its statistics; give the "
                              "K-FAC pass examples with response tokens")
        l_a, q_a = torch.linalg.eigh((s["a_sum"].double() / s["a_count"]))
        l_g, q_g = torch.linalg.eigh((s["g_sum"].double() / s["g_count"]))
        # Round-off can leave tiny negative eigenvalues of a PSD matrix: they are zero.
        out[name] = KronEigen(q_a.float(), l_a.clamp(min=0).float(), q_g.float(), l_g.clamp(min=0).float())
    return out


def new_ekfac_stats(modules: dict[str, torch.nn.Linear]) -> Stats:
    return {name: {"diag_sum": torch.zeros(*m.weight.shape, device=m.weight.device),
                   "count": torch.zeros((), dtype=torch.float64, device=m.weight.device)}
            for name, m in modules.items()}


def accumulate_ekfac(stats: Stats, io, batch, eigens: dict[str, KronEigen], weights: torch.Tensor,
                     chunk_elements: int = 1 << 26) -> None:
    """Add Σ_i w_i T_i (Q_Gᵀ ∇W L_i Q_A)² for one batch; examples in chunks to bound memory."""
    for name, (a, g) in io.items():
        e, s = eigens[name], stats[name]
        ra, rg = a.float() @ e.q_a, g.float() @ e.q_g  # rotate before the product: cheaper
        w = weights.to(ra.device).float() * label_counts(batch).to(ra.device)
        step = max(1, chunk_elements // (rg.shape[-1] * ra.shape[-1]))
        for start in range(0, ra.shape[0], step):
            per_example = torch.einsum("bto,bti->boi", rg[start:start + step], ra[start:start + step])
            s["diag_sum"] += torch.einsum("b,boi->oi", w[start:start + step], per_example.square())
        s["count"] += weights.sum().double().to(ra.device)


def attach_ekfac(eigens: dict[str, KronEigen], stats: Stats) -> None:
    for name, e in eigens.items():
        e.diag = (stats[name]["diag_sum"].double() / stats[name]["count"]).float()


def layer_damping(eigen: KronEigen, damping: float, relative: bool) -> float:
    """The absolute damping for one layer: ``damping``, or ``damping`` × its mean eigenvalue."""
    return damping * float(eigen.eigenvalues().mean()) if relative else damping


def inverse_hvp(eigen: KronEigen, v: torch.Tensor, damping: float) -> torch.Tensor:
    """(F + damping·I)⁻¹ v for a weight-shaped v (out × in), F = G ⊗ A (row-major vec) or EK-FAC."""
    values = eigen.eigenvalues() + damping
    if float(values.min()) <= 0:
        raise ConfigError("a K-FAC eigenvalue plus damping is zero, so the inverse does not exist; "
                          "set damping > 0")
    rotated = eigen.q_g.T @ v.float() @ eigen.q_a
    return eigen.q_g @ (rotated / values) @ eigen.q_a.T  # divide: this is the inverse
