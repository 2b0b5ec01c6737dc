"""Extracting projected gradient features for a dataset at one warmup checkpoint.

For every batch: one forward and one ``autograd.grad`` give each LoRA layer's per-example
gradients; each layer is transformed (SGD: the gradient itself; Adam: LESS's preconditioned step
from the checkpoint's moments) and projected at once, so only one layer's (B, out, in) gradients
exist at a time; the summed projection is L2-normalised and written to the store. Batches whose
rows are all done are skipped, so a rerun resumes an interrupted extraction.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import FeatureSettings
from ..data.batching import collate, token_budget_batches
from ..data.chat import tokenize_examples
from ..data.example import Example
from .gradients import layer_gradient, lora_modules, per_example_output_grads
from .optimizer_state import AdamMoments
from .projection import LayerwiseProjector, normalise_rows
from .store import FeatureStore


def make_projector(model, settings: FeatureSettings) -> LayerwiseProjector:
    modules = lora_modules(model)
    shapes = {name: tuple(m.weight.shape) for name, m in modules.items()}
    device = next(model.parameters()).device
    return LayerwiseProjector(shapes, settings.dim, settings.projection_seed, device)


def projected_features(model, batch, projector: LayerwiseProjector, moments: AdamMoments | None) -> torch.Tensor:
    """(B, k) L2-normalised projected features of one collated batch."""
    modules = {name: m for name, m in lora_modules(model).items() if name in projector.shapes}
    _, io = per_example_output_grads(model, batch, modules)
    total = None
    for name in projector.shapes:
        x, grad_out = io.pop(name)  # drop each layer's tensors as soon as they are used
        grads = layer_gradient(x, grad_out)
        if moments is not None:
            grads = moments.transform(name, grads)
        part = projector.project_layer(name, grads)
        total = part if total is None else total + part
    return normalise_rows(total)


def extract_features(model, tokenizer, examples: list[Example], store: FeatureStore,
                     settings: FeatureSettings, *, moments: AdamMoments | None = None, progress: bool = True,
                     desc: str = "features") -> dict:
    """Fill ``store`` with features for ``examples``; returns counts for the manifest."""
    model.eval()
    projector = make_projector(model, settings)
    pending = set(store.pending_ids())
    todo = [e for e in examples if e.id in pending]
    items, report = tokenize_examples(tokenizer, todo, settings.max_length) if todo else ([], None)
    if report is not None and report.no_response:
        # Rows stay zero; the manifest lists them so scoring and selection can leave them out.
        store.write(report.no_response, np.zeros((len(report.no_response), store.dim)))
    batches = token_budget_batches(items, settings.token_budget, settings.max_batch_size)
    pad_id = tokenizer.pad_token_id
    for indices in tqdm(batches, desc=desc, disable=not progress, leave=False):
        batch_items = [items[i] for i in indices]
        feats = projected_features(model, collate(batch_items, pad_id), projector, moments)
        store.write([it.id for it in batch_items], feats.float().cpu().numpy())
    return {"computed": len(items), "no_response": report.no_response if report else [],
            "truncated": report.truncated if report else 0}
