"""Extracting projected gradient features for a dataset at one warmup checkpoint.

For every batch: one forward and one ``autograd.grad`` give each LoRA layer's per-example
gradients; each layer is transformed (SGD: the gradient itself; Adam: LESS's preconditioned step
from the checkpoint's moments) and copied, in the projection's orientation (B, r, big), into one
array beside the layers before it, then dropped, so only one layer's full gradients exist at a time;
one matrix product projects the whole array (``projected_features``), and the sum is L2-normalised
and handed to a writer thread. Rows already in the store are skipped, so a rerun resumes an
interrupted extraction. A stage tokenises its examples and draws the projection once for all its
checkpoints (``TokenizedData``, ``projector=``); ``benchmarks/features_speed.py --case llama-3.7m``
measures the whole against plain training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.profiler import record_function

from ..config import FeatureSettings
from ..data.batching import collate, token_budget_batches
from ..data.chat import RenderReport, TokenizedExample, tokenize_examples
from ..data.example import Example
from ..logs import progress_bar
from .gradients import layer_gradient, lora_modules, per_example_output_grads
from .optimizer_state import AdamMoments
from .projection import LayerwiseProjector, normalise_rows
from .store import BackgroundWriter, FeatureStore


def make_projector(model, settings: FeatureSettings) -> LayerwiseProjector:
    modules = lora_modules(model)
    shapes = {name: tuple(m.weight.shape) for name, m in modules.items()}
    device = next(model.parameters()).device
    return LayerwiseProjector(shapes, settings.dim, settings.projection_seed, device, settings.projection)


SIDE_BY_SIDE_BYTES = 64 * 2**20  # the array one projection product reads: bounds the extra memory per batch


def projected_features(model, batch, projector: LayerwiseProjector, moments: AdamMoments | None,
                       buffers: dict | None = None) -> torch.Tensor:
    """(B, k) L2-normalised projected features of one collated batch.

    Each layer's per-example gradient is formed, transformed and copied into its columns of one
    (B, small, width) array, and then dropped; when the array is full (or the projection group
    ends), one matrix product projects all the layers in it (``LayerwiseProjector.project_group``).
    At the defaults a whole small model fits in one product; on a large one the array stays under
    ``SIDE_BY_SIDE_BYTES``. Pass the same ``buffers`` dict for every batch to reuse the array.
    The profiler labels (``features:...``) name where a batch's time goes.
    """
    buffers = {} if buffers is None else buffers
    modules = _modules(buffers, model, projector)
    with record_function("features:forward+gradient"):
        _, io = per_example_output_grads(model, batch, modules)
    total = None
    for index, group in enumerate(projector.groups):
        side = _buffer(buffers, index, group, batch["input_ids"].shape[0], io[group.names[0]][0].device)
        first = 0  # the group column where ``side`` starts
        for name in group.names:
            start, stop = group.spans[name]
            if stop - first > side.shape[2]:  # full: project what it holds, then refill it
                with record_function("features:projection"):
                    total = _add(total, projector.project_group(group, side[:, :, :start - first], first))
                first = start
            with record_function("features:per-example gradients"):
                x, grad_out = io.pop(name)  # drop each layer's tensors as soon as they are used
                grads = layer_gradient(x, grad_out)
                if moments is not None:
                    grads = moments.transform(name, grads)
                projector.orient(name, grads, out=side[:, :, start - first:stop - first])
                del x, grad_out, grads
        with record_function("features:projection"):
            total = _add(total, projector.project_group(group, side[:, :, :stop - first], first))
    with record_function("features:normalise"):
        return normalise_rows(total)


def _modules(buffers: dict, model, projector: LayerwiseProjector) -> dict:
    """The model's LoRA layers that ``projector`` projects, found once per model (walking every
    module of a model costs milliseconds a batch)."""
    kept = buffers.get("modules")
    if kept is None or kept[0] is not model:
        kept = buffers["modules"] = (model, {n: m for n, m in lora_modules(model).items() if n in projector.shapes})
    return kept[1]


def _add(total: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    return part if total is None else total.add_(part)


def _buffer(buffers: dict, index: int, group, batch: int, device) -> torch.Tensor:
    """Group ``index``'s (batch, small, width) float32 array: a view of one kept for the largest batch
    so far, at least as wide as the group's widest layer and at most ``SIDE_BY_SIDE_BYTES``."""
    kept = buffers.get(index)
    if kept is None or kept.shape[0] < batch:
        widest = max(stop - start for start, stop in group.spans.values())
        width = min(group.width, max(widest, SIDE_BY_SIDE_BYTES // (4 * batch * group.small)))
        kept = buffers[index] = torch.empty((batch, group.small, width), dtype=torch.float32, device=device)
    return kept[:batch]


@dataclass
class TokenizedData:
    """Examples tokenised once: a features stage extracts the same examples at every checkpoint."""

    items: list[TokenizedExample]
    report: RenderReport
    pad_id: int

    @classmethod
    def of(cls, tokenizer, examples: list[Example], max_length: int) -> "TokenizedData":
        items, report = tokenize_examples(tokenizer, examples, max_length) if examples else ([], RenderReport())
        return cls(items, report, tokenizer.pad_token_id)


def extract_features(model, data: TokenizedData, store: FeatureStore, settings: FeatureSettings, *,
                     moments: AdamMoments | None = None, projector: LayerwiseProjector | None = None) -> dict:
    """Fill ``store`` with features for the examples of ``data`` it still lacks; returns counts for
    the manifest. Rows are written by a background thread while the next batch is computed.

    ``projector``: ``make_projector(model, settings)`` made once and passed to every checkpoint's
    extraction, so that its matrices are drawn once (made here when not given).
    """
    model.eval()
    projector = projector or make_projector(model, settings)
    pending = set(store.pending_ids())
    items = [it for it in data.items if it.id in pending]
    no_response = [i for i in data.report.no_response if i in pending]
    buffers: dict = {}
    with BackgroundWriter(store) as writer:
        if no_response:
            # Rows stay zero; the manifest lists them so scoring and selection can leave them out.
            writer.write(no_response, np.zeros((len(no_response), store.dim)))
        batches = token_budget_batches(items, settings.token_budget, settings.max_batch_size)
        for indices in progress_bar(batches, desc="features"):
            batch_items = [items[i] for i in indices]
            feats = projected_features(model, collate(batch_items, data.pad_id), projector, moments, buffers)
            writer.write([it.id for it in batch_items], feats.float().cpu().numpy())
    return {"computed": len(items), "no_response": no_response,
            "truncated": sum(it.truncated for it in items)}
