"""Speed and peak memory at real-model scale: SmolLM2-135M-Instruct, every phase on the same batches.

    python benchmarks/real_model.py [--examples 24] [--min-tokens 384] [--threads 0]

SmolLM2-135M-Instruct (49,152-token vocabulary, ``instruct-select models smollm2-135m``), LoRA r=8
on q/k/v/o, warmed up for one epoch on 8 other examples (a real checkpoint, for real Adam moments).
The examples are real pool examples (GSM8K train and GPTeacher code) of ``--min-tokens`` to 512
tokens, in batches of ≤ 4,096 padded tokens, so about 8 examples of ~512 tokens a batch. Phases:

(a) plain training forward+backward (the chunked loss of ``instruct_select.loss``),
(b) projected Adam features at k = 8,192: ``extract_features`` into a fresh float16 store,
(c) a loss-only pass (inference, the chunked loss, as the loss-trajectory stage runs it),
(d) the old loss, logits at every position for the whole vocabulary (``old_full_logits_loss``,
    kept here as the reference): loss-only, and under a training forward+backward;
and the loss alone, new and old: forward+backward from the final hidden states (the body's
activations, which both paths hold alike, left out).

Within each batch the phases run back to back in an order that rotates from batch to batch, so a
drift in the machine's speed falls on all of them alike. Peak memory is each phase's own peak
above the loaded model (``common.peak_mib``, exact, not sampled); (b)'s state that the other phases
do not hold (projection matrices, Adam moments) is counted on top, drawn before the phase. Prints
examples/s, the peaks, the goals' ratios, then a profile of one (b) batch (torch.profiler).
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from common import peak_mib, resident_mib, seconds, training_side_examples
from instruct_select.config import FeatureSettings, LoraSettings, TrainSettings
from instruct_select.data.batching import collate, token_budget_batches
from instruct_select.data.chat import RenderReport
from instruct_select.data.example import Example
from instruct_select.features.extract import TokenizedData, extract_features, make_projector
from instruct_select.features.gradients import lora_modules
from instruct_select.features.optimizer_state import AdamMoments
from instruct_select.features.store import FeatureStore
from instruct_select.loss import backbone_and_head, labelled_positions_loss, model_per_example_loss, per_example_loss
from instruct_select.models.loading import load_base_model, load_tokenizer
from instruct_select.models.real import prepare_real_model
from instruct_select.train.loop import train_model

SETTINGS = FeatureSettings(dim=8192, token_budget=4096, max_batch_size=32, max_length=512, dtype="float16")
LABELS = ("features:forward+gradient", "features:per-example gradients", "features:projection", "features:normalise")


def old_full_logits_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss before issue 15: the model's own forward (logits at every position, whole vocabulary),
    then the masked per-example mean."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return per_example_loss(logits, batch["labels"])


def long_examples(tokenizer, n: int, min_tokens: int) -> tuple[TokenizedData, list[Example]]:
    """A seeded sample of ``n`` real examples of ``min_tokens``..512 tokens, and 4 more for the warmup."""
    # A token is at least one character, bar the template's few: shorter texts cannot reach min_tokens.
    examples = [e for e in training_side_examples() if sum(len(m["content"]) for m in e.messages) >= min_tokens - 32]
    every = TokenizedData.of(tokenizer, examples, 10_000)
    long = [it for it in every.items if min_tokens <= len(it) <= SETTINGS.max_length]
    if len(long) < n + 4:
        raise SystemExit(f"only {len(long)} examples of {min_tokens}..{SETTINGS.max_length} tokens; lower --min-tokens")
    chosen = random.Random(0).sample(long, n + 4)
    by_id = {e.id: e for e in examples}
    return TokenizedData(chosen[4:], RenderReport(), every.pad_id), [by_id[it.id] for it in chosen[:4]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--min-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = prepare_real_model("smollm2-135m")
    tokenizer = load_tokenizer(folder)
    data, warm_examples = long_examples(tokenizer, args.examples, args.min_tokens)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        # the lab-scale warmup these figures were measured with (the defaults are the papers')
        warm = TrainSettings(epochs=1, learning_rate=1e-3, warmup_ratio=0.05, batching="token_budget",
                             max_length=SETTINGS.max_length, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
        trained = train_model(load_base_model(folder), tokenizer, warm_examples, warm,
                              Path(tmp) / "warmup")
        model = trained.model.eval()
        moments = AdamMoments(trained.checkpoints[-1], list(lora_modules(model)))
        batches = token_budget_batches(data.items, SETTINGS.token_budget, SETTINGS.max_batch_size)
        parts = [TokenizedData([data.items[i] for i in b], RenderReport(), data.pad_id) for b in batches]
        collated = [collate(part.items, data.pad_id) for part in parts]
        phases = phase_functions(model, moments, parts, collated, Path(tmp))
        baseline = resident_mib()
        projector_mib = phases.pop("_projector_mib")
        moments_mib = sum(t.numel() * t.element_size() for d in (moments.exp_avg, moments.exp_avg_sq)
                          for t in d.values()) / 2**20
        times = {name: 0.0 for name in phases}
        peaks = {name: 0.0 for name in phases}
        names = list(phases)
        for index in range(len(batches)):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                elapsed = []
                peak = peak_mib(lambda: elapsed.append(seconds(lambda: phases[name](index))))
                times[name] += elapsed[0]
                peaks[name] = max(peaks[name], peak)
        report(args, data, batches, times, peaks, baseline, projector_mib + moments_mib)
        profile_features(phases["(b) projected Adam features"], len(batches) - 1)


def phase_functions(model, moments: AdamMoments, parts: list[TokenizedData], collated: list[dict], tmp: Path) -> dict:
    projector = make_projector(model, SETTINGS)
    stores = iter(range(10_000))

    def training(loss_fn):
        def run(index: int) -> None:
            loss_fn(model, collated[index]).mean().backward()
            model.zero_grad(set_to_none=True)
        return run

    def loss_only(loss_fn):
        def run(index: int) -> None:
            with torch.inference_mode():
                loss_fn(model, collated[index])
        return run

    def features(index: int) -> None:
        part = parts[index]
        store = FeatureStore.open_or_create(tmp / f"store-{next(stores)}", [it.id for it in part.items], SETTINGS.dim,
                                            SETTINGS.dtype, {})
        extract_features(model, part, store, SETTINGS, moments=moments, projector=projector)

    features(0)  # draws the projection matrices (a stage does so once, for every checkpoint)
    projector_mib = sum(t.numel() * t.element_size() for g in projector.groups for t in (g.right, g.signs, g.left)
                        if t is not None) / 2**20  # the matrices, and row_signs' signs
    backbone, head = backbone_and_head(model)
    with torch.no_grad():
        finals = [backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                  for b in collated]

    def loss_path(loss_of_states):
        """The loss alone, forward and backward from the final hidden states (as if the body's)."""
        def run(index: int) -> None:
            states = finals[index].detach().requires_grad_()
            loss_of_states(states, collated[index]["labels"]).sum().backward()
        return run

    return {"(a) training forward+backward": training(model_per_example_loss),
            "(b) projected Adam features": features,
            "(c) loss-only pass": loss_only(model_per_example_loss),
            "(c) the loss alone, fwd+bwd": loss_path(lambda h, labels: labelled_positions_loss(h, labels, head)),
            "(d) old loss, loss-only": loss_only(old_full_logits_loss),
            "(d) old loss, forward+backward": training(old_full_logits_loss),
            "(d) old loss alone, fwd+bwd": loss_path(lambda h, labels: per_example_loss(head(h), labels)),
            "_projector_mib": projector_mib}


def report(args, data: TokenizedData, batches: list, times: dict, peaks: dict, baseline: float, b_state: float) -> None:
    n = len(data.items)
    tokens = sum(len(it) for it in data.items)
    widths = [max(len(data.items[i]) for i in b) for b in batches]
    print(f"SmolLM2-135M-Instruct, LoRA r=8 on q/k/v/o, {n} real examples of {args.min_tokens}..512 tokens "
          f"(mean {tokens / n:.0f}), {len(batches)} batches of {min(map(len, batches))}-{max(map(len, batches))} "
          f"examples padded to {min(widths)}-{max(widths)} tokens, k={SETTINGS.dim}, {torch.get_num_threads()} threads")
    print(f"resident with the model loaded: {baseline:.0f} MiB; (b) also holds its projection matrices and Adam "
          f"moments: {b_state:.0f} MiB")
    print(f"{'phase':34s} {'examples/s':>10s} {'peak above the model (MiB)':>27s}")
    for name in times:
        extra = f" + {b_state:.0f}" if name.startswith("(b)") else ""
        print(f"{name:34s} {n / times[name]:10.2f} {peaks[name]:17.0f}{extra}")
    a, b, c = "(a) training forward+backward", "(b) projected Adam features", "(c) loss-only pass"
    old_loss, old_train = "(d) old loss, loss-only", "(d) old loss, forward+backward"
    print(f"(b)/(a) examples/s: {times[a] / times[b]:.2f}   (goal >= 0.7)")
    print(f"(b)/(a) peak memory with the model: {(baseline + peaks[b] + b_state) / (baseline + peaks[a]):.2f}   "
          f"(goal <= 1.3); above the model: {(peaks[b] + b_state) / peaks[a]:.2f}, without (b)'s matrices and "
          f"moments: {peaks[b] / peaks[a]:.2f}")
    print(f"new / old loss peak memory, loss-only: {peaks[c] / peaks[old_loss]:.2f} above the model, "
          f"{(baseline + peaks[c]) / (baseline + peaks[old_loss]):.2f} with it   (goal <= 0.5)")
    alone, old_alone = "(c) the loss alone, fwd+bwd", "(d) old loss alone, fwd+bwd"
    print(f"new / old loss peak memory, the loss alone (forward+backward from the final states): "
          f"{peaks[alone] / peaks[old_alone]:.2f}   (goal <= 0.5)")
    print(f"new / old loss peak memory, training forward+backward: {peaks[a] / peaks[old_train]:.2f} above the model, "
          f"{(baseline + peaks[a]) / (baseline + peaks[old_train]):.2f} with it (the body's activations, the same "
          f"in both, are {peaks[a] - peaks[alone]:.0f} MiB of the new path's {peaks[a]:.0f})")
    print(f"new / old loss examples/s: loss-only {times[old_loss] / times[c]:.2f}, "
          f"forward+backward {times[old_train] / times[a]:.2f}")


def profile_features(features, index: int) -> None:
    """Where (b)'s time goes on one batch: the ``features:*`` labels, then the heaviest operators."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = seconds(lambda: features(index))
    events = prof.key_averages()
    labelled = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in LABELS}
    print(f"profile of (b) on one batch ({wall:.2f} s under the profiler):")
    for label in LABELS:
        print(f"  {label:32s} {100 * labelled.get(label, 0.0) / wall:5.1f}%")
    print(f"  {'rest (collation, store, writer hand-off)':32s} {100 * (1 - sum(labelled.values()) / wall):5.1f}%")
    print("  heaviest operators (self time, share of the batch):")
    ops = sorted((e for e in events if not e.key.startswith("features:")), key=lambda e: -e.self_cpu_time_total)
    for e in ops[:8]:
        print(f"    {e.key[:48]:48s} {100 * e.self_cpu_time_total / 1e6 / wall:5.1f}%")


if __name__ == "__main__":
    main()
