"""The cost of one loss pass over the pool relative to one training epoch on the same data, in one run.

    python benchmarks/loss_pass_speed.py [--lab runs/lab] [--size large] [--examples 512] [--repeats 3] [--tiny]

Learning percentage needs n + 1 loss passes over the pool (before training and after each epoch)
on top of the n training epochs, so a pass must be cheap: goal ratio ≤ 0.5. This times (a) one
LoRA training epoch over the examples with the lab preset (no checkpoint written) and (b) one
loss pass of the trained model over the same examples as the loss-trajectories stage runs it
(LoRA merged into the float32 weights, forward only, inference mode, length-sorted token-budget
batches, rows written to a feature store), and prints (b)/(a). Tokenisation is left out of both: a training run and the loss-trajectories
stage each tokenise the pool once, not once per epoch. --lab reads an already built lab (build it
with ``instruct-select lab``); --tiny builds a tiny lab in a temporary folder instead.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from instruct_select.data.chat import tokenize_examples
from instruct_select.data.loading import load_examples
from instruct_select.features.store import FeatureStore
from instruct_select.data.batching import Batching
from instruct_select.features.trajectories import fill_loss_store
from instruct_select.lab.build import LabPaths, build_lab
from instruct_select.lab.presets import lab_train_settings, tiny_lab_settings
from instruct_select.models.loading import load_base_model, load_tokenizer
from instruct_select.train.loop import train_model


def tiny_lab(root: Path) -> LabPaths:
    return build_lab(root, tiny_lab_settings())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="runs/lab")
    parser.add_argument("--size", default="large")
    parser.add_argument("--examples", type=int, default=512, help="first N pool examples (0: all)")
    parser.add_argument("--token-budget", type=int, default=0,
                        help="loss-pass batch budget (0: the training budget, the stage's default)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        lab = tiny_lab(Path(tmp) / "lab") if args.tiny else LabPaths(Path(args.lab))
        size = "small" if args.tiny else args.size
        if not (lab.model(size) / "config.json").is_file():
            raise SystemExit(f"no lab model at {lab.model(size)}: build the lab first, or pass --tiny")
        examples = load_examples(lab.pool).examples
        examples = examples[: args.examples] if args.examples else examples
        tokenizer = load_tokenizer(lab.model(size))
        settings = lab_train_settings(seed=0, epochs=1, save_checkpoints=False)
        budget = args.token_budget or settings.token_budget
        start = time.perf_counter()
        tokenized = tokenize_examples(tokenizer, examples, settings.max_length)
        tokenize = time.perf_counter() - start
        epochs, passes = [], []
        # Alternating repeats, best of each: on a shared machine other jobs slow one phase or the other.
        for repeat in range(args.repeats):
            start = time.perf_counter()
            result = train_model(load_base_model(lab.model(size)), tokenizer, examples, settings, None)
            epochs.append(time.perf_counter() - start - tokenize)  # train_model tokenises once per run
            store = FeatureStore.open_or_create(Path(tmp) / f"losses-{repeat}", [e.id for e in examples], 1,
                                                "float32", {})
            start = time.perf_counter()
            model = result.model.merge_and_unload()  # what the stage does in float32
            fill_loss_store(model, tokenizer, examples, store, Batching(settings.max_length, budget, 64),
                            tokenized=tokenized)
            passes.append(time.perf_counter() - start)
    print(f"lab model '{size}', {len(examples)} examples, {result.tokens} tokens, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}; tokenising them once: {tokenize:.2f} s (excluded from both below)")
    print(f"  one training epoch (LoRA, token budget {settings.token_budget}): {min(epochs):.2f} s "
          f"(all: {', '.join(f'{t:.2f}' for t in epochs)})")
    print(f"  one loss pass (inference, token budget {budget}):     {min(passes):.2f} s "
          f"(all: {', '.join(f'{t:.2f}' for t in passes)})")
    print(f"  ratio loss pass / epoch: {min(passes) / min(epochs):.2f} (goal <= 0.5)")

if __name__ == "__main__":
    main()
