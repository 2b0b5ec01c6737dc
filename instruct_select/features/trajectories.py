"""Per-example loss trajectories: each pool example's response loss before and after every epoch.

Learning percentage (METHODS §3) needs P_e(i) = exp(mean response-token loss of example i) for
e = 0 (the base model) and after each epoch of training on the pool. The loss is the one loss
(``loss.model_per_example_loss``), so masking and length normalisation match training.

    out_dir/epoch-0/   the base model's loss of every example   (a FeatureStore, dim 1, float32)
    out_dir/epoch-E/   the loss at the training run's checkpoint E (base model + its LoRA weights)

Each epoch folder is a cached stage with a manifest (a rerun skips it) and a done-mask (an
interrupted one resumes); under torch.distributed every rank takes every N-th example and the
main process merges (``run.producers.sharded``). Forward passes only, under ``torch.inference_mode``,
in length-sorted token-budget batches. An example left with no response token after truncation
has no loss: it is reported, stored as NaN, and listed in ``LossTrajectories.excluded`` so a
selector leaves it out.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..artifacts import fingerprint_json, require_finished
from ..config import LoraSettings, from_dict
from ..data.batching import Batching, collate, token_budget_batches
from ..data.chat import RenderReport, TokenizedExample, tokenize_examples
from ..data.example import Example
from ..errors import ArtifactMismatchError
from ..logs import progress_bar
from ..train.checkpoint import Checkpoint, load_weights_into
from ..loss import model_per_example_loss
from ..models.loading import add_lora, load_base_model
from .store import FeatureStore

WRITE_EVERY_SECONDS = 2.0


@torch.inference_mode()
def fill_loss_store(model, tokenizer, examples: list[Example], store: FeatureStore, batching: Batching, *,
                    tokenized: tuple[list[TokenizedExample], RenderReport] | None = None) -> dict:
    """Write the loss of every example still pending in ``store``; returns counts for the manifest
    (the examples with no response token are listed there, under ``no_response``).

    ``tokenized``: ``tokenize_examples(tokenizer, examples, batching.max_length)`` done once by the
    caller, so that n + 1 passes over the same pool tokenise it once (else it is done here).
    """
    model.eval()
    pending = set(store.pending_ids())
    if not pending:
        return {"computed": 0, "no_response": [], "truncated": 0}
    if tokenized is None:
        tokenized = tokenize_examples(tokenizer, [e for e in examples if e.id in pending], batching.max_length)
    items = [it for it in tokenized[0] if it.id in pending]
    no_response = [i for i in tokenized[1].no_response if i in pending]
    if no_response:
        store.write(no_response, np.full((len(no_response), 1), np.nan))
    pad_id = tokenizer.pad_token_id
    done_ids: list[str] = []
    done_values: list[np.ndarray] = []
    last_write = time.monotonic()
    for indices in progress_bar(token_budget_batches(items, batching.token_budget, batching.max_batch_size),
                                desc="losses"):
        batch_items = [items[i] for i in indices]
        losses = model_per_example_loss(model, collate(batch_items, pad_id))
        done_ids.extend(it.id for it in batch_items)
        done_values.append(losses.float().cpu().numpy())
        # Each store write flushes to disk (milliseconds); on small models that rivals a batch's
        # forward pass, so rows are written every few seconds: an interruption loses only those.
        if time.monotonic() - last_write >= WRITE_EVERY_SECONDS:
            store.write(done_ids, np.concatenate(done_values)[:, None])
            done_ids, done_values, last_write = [], [], time.monotonic()
    if done_ids:
        store.write(done_ids, np.concatenate(done_values)[:, None])
    return {"computed": len(items), "no_response": no_response, "truncated": sum(it.truncated for it in items)}


class ModelAtEpoch:
    """The model at each epoch of a training run: epoch 0 is the base model, epoch E the base model
    with checkpoint E's trainable weights copied in by name. Epochs must be asked for in order.

    In float32 each LoRA epoch is a fresh base model with the adapter merged into its weights: the
    forward pass is about a quarter faster on the lab's models, and a fresh load keeps every epoch
    independent of the ones before it (a resumed run computes exactly what an uninterrupted one
    does). In bfloat16/float16 merging would round the small LoRA update into the base weights,
    so the adapter stays a separate layer, added once and refilled per checkpoint.
    """

    def __init__(self, model_path: str | Path, train_manifest: dict, device: str | None, merge: bool | None = None):
        self.model_path, self.device = model_path, device
        self.dtype = train_manifest["settings"].get("dtype", "float32")
        self.train = train_manifest["settings"]["train"]
        self.merge = self.dtype == "float32" if merge is None else merge
        self.model = None
        self.lora_added = False
        self.past_epoch_0 = False

    def _base(self):
        return load_base_model(self.model_path, self.dtype, self.device)

    def get(self, checkpoint: Checkpoint | None):
        if checkpoint is None:
            if self.past_epoch_0:
                raise RuntimeError("epoch 0 requested after a checkpoint was loaded")  # a bug
            self.model = self._base() if self.model is None else self.model
            return self.model
        self.past_epoch_0 = True
        lora = from_dict(LoraSettings, self.train["lora"])
        if self.train.get("full_finetune"):
            self.model = self._base() if self.model is None else self.model
        elif self.merge:
            self.model = None  # release the previous epoch's model before loading the next
            model = add_lora(self._base(), lora)
            load_weights_into(model, checkpoint)
            self.model = model.merge_and_unload()
            return self.model
        elif not self.lora_added:
            self.model = add_lora(self._base() if self.model is None else self.model, lora)
            self.lora_added = True
        load_weights_into(self.model, checkpoint)
        return self.model


@dataclass
class LossTrajectories:
    """Losses of N examples at epochs 0..n: ``losses[i, e]`` is example ``ids[i]`` at epoch e.

    ``excluded`` lists the ids with no loss (no response token after truncation): their rows are
    NaN and no selector may rank them.
    """

    ids: list[str]
    losses: np.ndarray  # (N, n + 1) float64
    excluded: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        """n: the number of training epochs (columns minus the base model's)."""
        return self.losses.shape[1] - 1

    @property
    def perplexities(self) -> np.ndarray:
        """exp(loss), in float64 so that large losses do not overflow."""
        return np.exp(self.losses)

    def fingerprint(self) -> str:
        return fingerprint_json({"ids": self.ids, "meta": self.meta})

    @classmethod
    def from_losses(cls, ids: list[str], losses: np.ndarray, meta: dict | None = None) -> "LossTrajectories":
        losses = np.asarray(losses, dtype=np.float64)
        if losses.ndim != 2 or losses.shape[0] != len(ids) or losses.shape[1] < 2:
            raise ArtifactMismatchError(f"loss trajectories must be (N, epochs + 1 >= 2), got {losses.shape}")
        excluded = [ids[i] for i in np.flatnonzero(np.isnan(losses).any(axis=1))]
        return cls(list(ids), losses, excluded, meta or {})

    @classmethod
    def load(cls, out_dir: str | Path) -> "LossTrajectories":
        """Read every finished epoch folder of ``out_dir`` (epochs 0..n, all present)."""
        out_dir = Path(out_dir)
        folders = {int(p.name[len("epoch-"):]): p for p in out_dir.glob("epoch-*")
                   if p.is_dir() and p.name[len("epoch-"):].isdigit()}
        epochs = sorted(folders)
        if not epochs or epochs != list(range(len(epochs))) or len(epochs) < 2:
            raise ArtifactMismatchError(
                f"{out_dir} holds loss epochs {epochs}; learning percentage needs epoch 0 and at least "
                "one trained epoch with none missing: rerun the loss-trajectories stage")
        columns, ids, metas = [], None, []
        for epoch in epochs:
            require_finished(folders[epoch], f"loss trajectory for epoch {epoch}")
            store = FeatureStore.open(folders[epoch])
            if ids is not None and store.ids != ids:
                raise ArtifactMismatchError(f"{folders[epoch]} holds losses for other examples than epoch 0")
            ids = store.ids
            columns.append(np.asarray(store.features[:, 0], dtype=np.float64))
            metas.append(store.meta)
        if len({(m.get("train_run"), m.get("data")) for m in metas}) != 1:
            raise ArtifactMismatchError(f"the epoch folders in {out_dir} come from different training runs; "
                                        "delete the folder and recompute")
        meta = {k: metas[0][k] for k in ("model", "train_run", "data", "max_length") if k in metas[0]}
        return cls.from_losses(ids, np.stack(columns, axis=1), meta)
