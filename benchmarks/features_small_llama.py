"""``features_speed.py --case llama-3.7m``: projected SGD features against plain training, small scale.

A 3.7M-parameter Llama (random weights, tied embeddings, a 1,024-token BPE trained on the
examples; ``common.small_llama``), LoRA r=8 on q/k/v/o with random B (so every layer has a
gradient), real pool examples (GSM8K train and GPTeacher code; ``common.real_examples``) at ≤ 512
tokens in batches of ≤ 2,048 padded tokens, k = 8,192, features stored as float16:

(a) a plain training forward+backward over the collated batches (a training run tokenises once),
(b) the features stage at one checkpoint: ``extract_features`` into a fresh store, from examples
    the stage tokenised once (tokenising is timed on its own and added: whole for a stage with one
    checkpoint, a quarter for LESS's four);
(b_old) the same with the ``shared_rows`` projection (the default before issue 20), for the cost
    of ``row_signs``;
(f) (b)'s floor: the forward and the gradient to the LoRA outputs only (``per_example_output_grads``
    on the collated batches), no per-example gradient, projection, collation or store; a / f bounds
    (b)/(a) from above.

Repeats rotate the order of the phases within each slice and keep each slice's best (other jobs
on a shared machine slow one phase or the other). Then one more (b) under torch.profiler gives where its time goes (the
``features:*`` labels of ``projected_features``), and the store writes, which the writer thread
overlaps with the next batch, are timed on their own.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from common import real_examples, seconds, small_llama
from instruct_select.config import FeatureSettings, LoraSettings
from instruct_select.data.chat import RenderReport
from instruct_select.data.batching import collate, token_budget_batches
from instruct_select.features.extract import TokenizedData, extract_features, make_projector
from instruct_select.features.gradients import lora_modules, per_example_output_grads
from instruct_select.features.store import FeatureStore
from instruct_select.loss import model_per_example_loss
from instruct_select.models.loading import add_lora, load_base_model, load_tokenizer

SETTINGS = FeatureSettings(dim=8192, token_budget=2048, max_batch_size=64, max_length=512, dtype="float16")
LABELS = ("features:forward+gradient", "features:per-example gradients", "features:projection", "features:normalise")


def small_llama_case(n_examples: int, repeats: int, slices: int = 8) -> None:
    examples = real_examples(n_examples)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        folder = small_llama(Path(tmp) / "model", examples)
        tokenizer = load_tokenizer(folder)
        torch.manual_seed(0)
        model = add_lora(load_base_model(folder), LoraSettings(r=8, alpha=16, dropout=0.0))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
        model.eval()
        tokenize = seconds(lambda: TokenizedData.of(tokenizer, examples, SETTINGS.max_length))
        data = TokenizedData.of(tokenizer, examples, SETTINGS.max_length)
        # The stage's batches, cut into slices of consecutive batches; within a slice (a) and (b) run
        # back to back in alternating order, so that a drift in the machine's speed (other tenants,
        # the paused job) falls on both alike. A slice re-batches into exactly its own batches.
        whole = token_budget_batches(data.items, SETTINGS.token_budget, SETTINGS.max_batch_size)
        cuts = [round(i * len(whole) / slices) for i in range(slices + 1)]
        parts = [TokenizedData([data.items[i] for b in whole[start:stop] for i in b], RenderReport(), data.pad_id)
                 for start, stop in zip(cuts, cuts[1:])]
        batches = [[collate([part.items[i] for i in b], data.pad_id)
                    for b in token_budget_batches(part.items, SETTINGS.token_budget, SETTINGS.max_batch_size)]
                   for part in parts]
        assert sum(map(len, batches)) == len(whole)
        stores = iter(range(10_000))

        def fresh_store(part: TokenizedData) -> FeatureStore:
            return FeatureStore.open_or_create(Path(tmp) / f"store-{next(stores)}", [it.id for it in part.items],
                                               SETTINGS.dim, SETTINGS.dtype, {})

        def training(index: int):
            for batch in batches[index]:
                model_per_example_loss(model, batch).mean().backward()
                model.zero_grad(set_to_none=True)

        projector = make_projector(model, SETTINGS)  # as a stage does: drawn once, for every checkpoint
        old_settings = replace(SETTINGS, projection="shared_rows")
        old_projector = make_projector(model, old_settings)
        modules = lora_modules(model)

        def features(index: int):
            extract_features(model, parts[index], fresh_store(parts[index]), SETTINGS,
                             projector=projector)

        def old_features(index: int):
            extract_features(model, parts[index], fresh_store(parts[index]), old_settings,
                             projector=old_projector)

        def forward_gradient(index: int):  # (b)'s floor: no per-example work, no collation, no store
            for batch in batches[index]:
                per_example_output_grads(model, batch, modules)

        features(0)  # warm: projection matrices, allocator
        old_features(0)
        phases = {"a": training, "b": features, "b_old": old_features, "f": forward_gradient}
        times = {name: [[0.0] * repeats for _ in parts] for name in phases}
        for repeat in range(repeats):
            for index in range(slices):
                order = list(phases)
                shift = (index + repeat) % len(order)  # rotate, so a drift falls on every phase alike
                for name in order[shift:] + order[:shift]:
                    times[name][index][repeat] = seconds(lambda: phases[name](index))
        best = {name: sum(min(t) for t in times[name]) for name in phases}  # each slice's least disturbed run
        a_times, b_times = times["a"], times["b"]
        a, b = best["a"], best["b"]
        per_repeat = [sum(t[r] for t in a_times) / sum(t[r] for t in b_times) for r in range(repeats)]
        params = sum(p.numel() for p in model.get_base_model().parameters() if not p.requires_grad)
        tokens = sum(len(it) for it in data.items)
        print(f"Llama with {params / 1e6:.2f}M parameters, LoRA r=8 on q/k/v/o, {len(data.items)} real examples "
              f"({tokens} tokens, mean {tokens / len(data.items):.0f}) in {sum(map(len, batches))} batches of <= "
              f"{SETTINGS.token_budget} padded tokens, k={SETTINGS.dim}, {torch.get_num_threads()} threads; "
              f"{slices} slices x {repeats} alternating repeats, each slice's best kept")
        print(f"(a) training forward+backward:     {a:6.2f} s")
        print(f"(b) SGD features, one checkpoint:  {b:6.2f} s")
        print(f"    tokenising the examples once:  {tokenize:6.2f} s")
        print(f"(b)/(a) in examples/s, tokenising counted whole (a one-checkpoint stage): {a / (b + tokenize):.3f}")
        print(f"(b)/(a) per checkpoint of a four-checkpoint stage (LESS):                 {a / (b + tokenize / 4):.3f}"
              "   (goal >= 0.9)")
        print(f"    each repeat's (b)/(a), without tokenising: {', '.join(f'{r:.3f}' for r in per_repeat)}")
        print(f"(b) with the shared_rows projection (before issue 20): {best['b_old']:6.2f} s; "
              f"row_signs costs {best['b'] / best['b_old']:.3f} x its time")
        print(f"(f) forward + gradient to the LoRA outputs only ((b)'s floor): {best['f']:6.2f} s; "
              f"(f)/(a) = {best['f'] / a:.3f}, so (b)/(a) <= {a / best['f']:.3f}")
        _profile(lambda: [features(i) for i in range(slices)], b, fresh_store(data), sum(map(len, batches)))


def _profile(features, wall: float, store: FeatureStore, n_batches: int) -> None:
    """Where (b)'s time goes: the profiler's totals per label, scaled to the unprofiled wall time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = seconds(features)
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in LABELS}
    print(f"profile of (b) ({profiled:.2f} s under the profiler; shares of that, and of the unprofiled {wall:.2f} s):")
    for label in LABELS:
        share = totals.get(label, 0.0) / profiled
        print(f"  {label:32s} {100 * share:5.1f}%  ~{share * wall:5.2f} s")
    rest = 1 - sum(totals.values()) / profiled
    print(f"  {'rest (batching, collation, hand-off to the writer)':32s} {100 * rest:5.1f}%  ~{rest * wall:5.2f} s")
    # as many writes as batches, of as many rows in all
    rows = np.zeros((len(store.ids), store.dim), dtype=np.float32)
    step = -(-len(store.ids) // n_batches)
    writes = seconds(lambda: [store.write(store.ids[i:i + step], rows[i:i + step])
                              for i in range(0, len(store.ids), step)])
    print(f"  store writes, done by the writer thread during the next batches: {writes:.2f} s in all")
