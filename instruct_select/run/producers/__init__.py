"""Producers: one module per artifact a selector can need, and the registry that maps needs to them.

A selector declares its needs (``Selector.needs``); ``produce`` runs the producers of exactly those
needs for a run config and hands back ``Artifact``s (value and fingerprint). Each producer builds
its artifact as cached, resumable stages with manifests, in the folders ``RunLayout`` names, split
across processes or shard jobs like every per-example pass. A new artifact is one producer module
plus one line in ``PRODUCERS``.

IDEAL's per-round domain influence is a producer too (``domain_influence``), called by IDEAL's
rounds with the model each round trains, rather than through ``produce``.
"""
from __future__ import annotations

from typing import Callable

from ...artifacts import Artifact
from ...config import RunConfig
from ..context import RunContext
from ...errors import ConfigError
from ...layout import RunLayout
from . import attribution, embeddings, encoder_embeddings, hidden_states, ifd_losses, loss_trajectories, representations

# produce(context, config, layout) -> Artifact, or None when the context stops the run early (a shard
# job, --stop-after).
Producer = Callable[[RunContext, RunConfig, RunLayout], "Artifact | None"]
PRODUCERS: dict[str, Producer] = {
    "encoder_embeddings": encoder_embeddings.produce,  # first: a missing encoder is refused before any warmup
    "loss_trajectories": loss_trajectories.produce,
    "embeddings": embeddings.produce,
    "attribution": attribution.produce,
    "hidden_states": hidden_states.produce,
    "representations": representations.produce,
    "ifd_losses": ifd_losses.produce,
}


def produce(needs: set[str], context: RunContext, config: RunConfig, layout: RunLayout) -> dict[str, Artifact] | None:
    """Every needed artifact, in a fixed order: ``needs``, the artifacts the run's selectors need
    (``Selector.needs``); ``context``, the command's pool, device, dtype, shard and stop_after;
    ``config``, the run; ``layout``, its folders. Returns {need: Artifact(value, fingerprint)}, or
    None when a shard job or ``stop_after`` ended the run (each producer still does its part of such
    a run). An unknown need is refused by name."""
    unknown = needs - set(PRODUCERS)
    if unknown:
        raise ConfigError(f"no producer makes {sorted(unknown)}; known: {', '.join(PRODUCERS)}")
    artifacts = {need: PRODUCERS[need](context, config, layout) for need in PRODUCERS if need in needs}
    if any(artifact is None for artifact in artifacts.values()):
        return None
    return artifacts
