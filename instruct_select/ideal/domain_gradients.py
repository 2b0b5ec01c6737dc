"""Domain influence on the reference loss: I_j = −∇L_refᵀ H⁻¹ ∇L_{D_j}, with H from K-FAC / EK-FAC.

∇L_{D_j} is the SUM of the domain's per-example gradients over the current mixture (a repeated
example counts as often as it appears), so a domain's size matters. ∇L_ref is the gradient of the
MEAN reference loss. Both are restricted to the chosen layers' weights, and H is block-diagonal
over those layers.

By linearity I_j = Σ_{i∈D_j} c_i s_i with s_i = −⟨H⁻¹∇L_ref, ∇L_i⟩ and c_i the example's count,
so H⁻¹∇L_ref is computed once per layer and each example's score needs no per-example gradient:
⟨U, Σ_t g_t a_tᵀ⟩ = Σ_t g_tᵀ U a_t. Unique examples are scored once. ``domain_gradient_sums`` forms
the domain gradients explicitly (a check for small models; it agrees with the scores' sums).

H is the Fisher of the MEAN per-example training loss (see ``kfac``); the Hessian of the summed
objective is N times it, which scales every I_j by the same positive N and so leaves
β = −m·I/max|I| unchanged (see ``update`` for the sign).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.chat import TokenizedExample
from ..distributed import is_distributed, world_size
from ..logs import progress_bar
from .kfac import (KronEigen, PassSettings, accumulate_ekfac, accumulate_factors, all_reduce_, attach_ekfac,
                   eigenbases, for_each_batch, inverse_hvp, layer_damping, new_ekfac_stats,
                   new_factor_stats, select_layers, shard)


@dataclass
class SolveSettings:
    """Which layers carry the influence and how the K-FAC inverse is damped."""

    layers: list[str]
    damping: float
    relative: bool
    ekfac: bool = True
    layers_per_pass: int = 0


@dataclass
class Mixture:
    """The current mixture: ``items``, its unique examples (tokenised); ``domain_of``, each one's
    domain by id; ``counts``, how often each id appears in the mixture (None: once each)."""

    items: list[TokenizedExample]
    domain_of: dict[str, str]
    counts: dict[str, float] | None = None


@dataclass
class DomainInfluence:
    """influences: I_j per domain; scores: s_i per unique example id (one copy); damping: the
    absolute damping used per layer."""

    influences: dict[str, float]
    scores: dict[str, float]
    reference_loss: float
    damping: dict[str, float]
    layers: list[str]
    counts: dict[str, float] = field(default_factory=dict)


def _weights(chosen: list[TokenizedExample], counts: dict[str, float] | None) -> torch.Tensor:
    return torch.tensor([1.0 if counts is None else float(counts[x.id]) for x in chosen])


def _counted(visit: Callable, bar) -> Callable:
    """``visit`` that also advances ``bar`` by the batch's examples."""
    def counted(chosen, losses, io, batch):
        visit(chosen, losses, io, batch)
        bar.update(len(chosen))
    return counted


def fit_kfac(model, modules, items: list[TokenizedExample], cfg: PassSettings, *,
             counts: dict[str, float] | None = None, ekfac: bool = True) -> dict[str, KronEigen]:
    """Factors over ``items`` (weighted by ``counts``), their eigenbases, and EK-FAC's diagonal."""
    local = shard(items)
    stats = new_factor_stats(modules)
    with progress_bar(total=len(local), desc="K-FAC factors") as bar:
        for_each_batch(model, local, modules, cfg, _counted(
            lambda chosen, losses, io, batch: accumulate_factors(stats, io, batch, _weights(chosen, counts)), bar),
                       labels=cfg.labels)
    eigens = eigenbases(all_reduce_(stats))
    if ekfac:
        diag = new_ekfac_stats(modules)
        with progress_bar(total=len(local), desc="EK-FAC eigenvalues") as bar:
            for_each_batch(model, local, modules, cfg, _counted(
                lambda chosen, losses, io, batch: accumulate_ekfac(diag, io, batch, eigens, _weights(chosen, counts)),
                bar), labels=cfg.labels)
        attach_ekfac(eigens, all_reduce_(diag))
    return eigens


def gradient_sum(model, modules, items: list[TokenizedExample], cfg: PassSettings, *,
                 counts: dict[str, float] | None = None) -> tuple[dict[str, torch.Tensor], float, float]:
    """(Σ_i c_i ∇W L_i per layer, Σ_i c_i L_i, Σ_i c_i) over every process, with the data's labels."""
    stats = {n: {"grad": torch.zeros_like(m.weight, dtype=torch.float32)} for n, m in modules.items()}
    device = next(iter(modules.values())).weight.device
    totals = {"loss": torch.zeros((), dtype=torch.float64, device=device),
              "count": torch.zeros((), dtype=torch.float64, device=device)}

    def visit(chosen, losses, io, batch):
        w = _weights(chosen, counts).to(device)
        for name, (a, g) in io.items():
            stats[name]["grad"] += torch.einsum("b,bto,bti->oi", w, g.float(), a.float())
        totals["loss"] += (w.double() * losses.double()).sum()
        totals["count"] += w.double().sum()

    for_each_batch(model, shard(items), modules, cfg, visit)
    all_reduce_({**stats, "totals": totals})
    return {n: s["grad"] for n, s in stats.items()}, float(totals["loss"]), float(totals["count"])


def reference_gradient(model, modules, items: list[TokenizedExample], cfg: PassSettings
                       ) -> tuple[dict[str, torch.Tensor], float]:
    """∇ of the MEAN reference loss per layer, and that mean loss."""
    grads, loss, count = gradient_sum(model, modules, items, cfg)
    return {n: g / count for n, g in grads.items()}, loss / count


def precondition(eigens: dict[str, KronEigen], grads: dict[str, torch.Tensor], damping: float,
                 relative: bool) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """H⁻¹∇ per layer (K-FAC blocks, damped) and the absolute damping each layer used."""
    used = {n: layer_damping(e, damping, relative) for n, e in eigens.items()}
    return {n: inverse_hvp(eigens[n], grads[n], used[n]) for n in eigens}, used


def example_scores(model, modules, items: list[TokenizedExample], preconditioned: dict[str, torch.Tensor],
                   cfg: PassSettings) -> dict[str, float]:
    """s_i = −⟨H⁻¹∇L_ref, ∇L_i⟩ for every item (gathered from every process)."""
    scores: dict[str, float] = {}

    def visit(chosen, losses, io, batch):
        total = torch.zeros(len(chosen), dtype=torch.float64, device=losses.device)
        for name, (a, g) in io.items():
            u = preconditioned[name].to(a.device)
            total += torch.einsum("bto,bto->b", g.float(), a.float() @ u.T).double().to(total.device)
        scores.update({x.id: -float(v) for x, v in zip(chosen, total)})

    local = shard(items)
    with progress_bar(total=len(local), desc="influence scores") as bar:
        for_each_batch(model, local, modules, cfg, _counted(visit, bar))
    return _gather(scores)


def _gather(scores: dict[str, float]) -> dict[str, float]:
    """Every process's per-example scores, merged by id (each process scored its own shard)."""
    if not is_distributed():
        return scores
    parts: list = [None] * world_size()
    torch.distributed.all_gather_object(parts, scores)
    return {k: v for part in parts for k, v in part.items()}


def domain_influences(scores: dict[str, float], domain_of: dict[str, str],
                      counts: dict[str, float] | None = None) -> dict[str, float]:
    """I_j = Σ_{i∈D_j} c_i s_i: a SUM, so a domain twice as large weighs twice as much."""
    totals: dict[str, float] = {}
    for id_, score in sorted(scores.items()):
        weight = 1.0 if counts is None else float(counts[id_])
        totals[domain_of[id_]] = totals.get(domain_of[id_], 0.0) + weight * score
    return dict(sorted(totals.items()))


def domain_gradient_sums(model, modules, items: list[TokenizedExample], domain_of: dict[str, str],
                         cfg: PassSettings, counts: dict[str, float] | None = None
                         ) -> dict[str, dict[str, torch.Tensor]]:
    """∇L_{D_j} = Σ_{i∈D_j} c_i ∇W L_i per domain and layer, explicitly."""
    groups: dict[str, list[TokenizedExample]] = {}
    for item in items:
        groups.setdefault(domain_of[item.id], []).append(item)
    return {d: gradient_sum(model, modules, group, cfg, counts=counts)[0] for d, group in sorted(groups.items())}


def compute_influences(model, mixture: Mixture, reference: list[TokenizedExample], cfg: PassSettings,
                       solve: SolveSettings, *, fit_items: list[TokenizedExample] | None = None) -> DomainInfluence:
    """Every domain's influence on the mean reference loss, layer group by layer group.

    ``model``: the causal LM the round trained; ``mixture``: the mixture's unique examples, each
    one's domain and how often each appears; ``reference``: the reference examples whose mean loss
    the influences are on; ``cfg``: how the passes batch and label; ``solve``: the layers and the
    damping; ``fit_items`` (default: the mixture's items) fit the factors. A group's factors are
    dropped before the next group's are fitted, which bounds memory on large models. Returns each
    domain's influence I_j (loss in nats per unit of upweighting), each example's score, the mean
    reference loss (nats) and the damping each layer used.
    """
    items, domain_of, counts = mixture.items, mixture.domain_of, mixture.counts
    modules = select_layers(model, solve.layers)
    names = list(modules)
    size = solve.layers_per_pass or len(names)
    scores = {x.id: 0.0 for x in items}
    used: dict[str, float] = {}
    reference_loss = float("nan")
    model.eval()
    for start in range(0, len(names), size):
        group = {n: modules[n] for n in names[start:start + size]}
        eigens = fit_kfac(model, group, fit_items or items, cfg, counts=counts, ekfac=solve.ekfac)
        grads, reference_loss = reference_gradient(model, group, reference, cfg)
        preconditioned, damping_used = precondition(eigens, grads, solve.damping, solve.relative)
        del eigens, grads
        used.update(damping_used)
        for id_, value in example_scores(model, group, items, preconditioned, cfg).items():
            scores[id_] += value
    return DomainInfluence(domain_influences(scores, domain_of, counts), scores, reference_loss,
                           used, names, dict(counts or {}))
