"""float32 against the bfloat16 paths on the CPU: SmolLM2-135M-Instruct, every stage on the same examples.

    flock /tmp/is-heavy.lock python benchmarks/cpu_dtype.py [--pool 90] [--validation 4] [--repeats 2]
        [--paths float32 bfloat16-autocast bfloat16] [--out benchmarks/results/cpu_dtype.md]

The pool is a seeded sample of real training-side examples (GSM8K train, GPTeacher code, ShareGPT;
at most 1,200 characters each), the validation targets 3 tasks of ``--validation`` other examples
from the same files. LoRA r=8 on q/k/v/o, max_length 256, token-budget batches of 2,048 tokens.
Each stage runs every dtype path on the same examples, the paths back to back (their order rotated
from stage to stage and repeat to repeat, so a drift in the machine's load falls on all alike):

- warmup: ``train_model``, one epoch over the pool (the same loop fine-tunes on a selection);
- features: ``extract_features`` from the float32 warmup's checkpoint for every path (so only the
  dtype differs): the pool with Adam moments, the validation with SGD, k = 2,048;
- loss pass: ``model_per_example_loss`` over the pool without gradients (IFD, learning percentage
  and loss trajectories run this pass);
- held-out loss: ``heldout_losses`` on the validation examples.

Prints, per stage, examples/s and the ratio to float32; the features' per-example cosine to
float32's; the overlap of LESS's and BIDS's 15% selections with float32's; the mean held-out
loss's relative difference. Writes the table to ``--out``.

Repeats: the table keeps each path's best repeat and lists the repeat-by-repeat ratios under it.
On a shared 2-core machine one repeat is not enough: a run of one repeat (issue 21) measured the
bfloat16 features at 0.74× float32, where interleaved repeats measure 1.45–1.78× (docs/RESULTS.md,
"bfloat16 on the CPU"); the bfloat16 paths run more small operations (the casts around LoRA's
float32 branch), and each of them stalls while another process holds one of the two cores.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import DATA_DIR
from instruct_select.config import FeatureSettings, LoraSettings, TrainSettings
from instruct_select.data.batching import Batching, collate, token_budget_batches
from instruct_select.data.loading import load_examples
from instruct_select.evaluate.heldout_loss import heldout_losses
from instruct_select.features.extract import TokenizedData, extract_features
from instruct_select.features.gradients import lora_modules
from instruct_select.features.optimizer_state import AdamMoments
from instruct_select.features.store import FeatureStore
from instruct_select.loss import model_per_example_loss
from instruct_select.models.loading import add_lora, cpu_has_fast_bfloat16, load_base_model, load_tokenizer
from instruct_select.models.real import prepare_real_model
from instruct_select.select.bids import bids_ranking
from instruct_select.select.less import task_means, top_rows
from instruct_select.train.checkpoint import load_weights_into
from instruct_select.train.loop import train_model

FILES = ("gsm8k_train.jsonl", "gpteacher_codegen.json", "sharegpt_dummy_conversation.json")
MAX_CHARS = 1200
LORA = LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
TRAIN = TrainSettings(epochs=1, learning_rate=1e-4, batching="token_budget", token_budget=2048, max_batch_size=8,
                      max_length=256, lora=LORA, seed=0)
FEATURES = FeatureSettings(dim=2048, dtype="float32", token_budget=2048, max_batch_size=8, max_length=256)
BATCHING = Batching(max_length=256, token_budget=2048, max_batch_size=8)


def sample(n_pool: int, n_validation: int, seed: int = 0):
    """(pool, validation, validation tasks): disjoint seeded samples of short examples of each file."""
    rng = random.Random(f"cpu_dtype:{seed}")
    pool, validation, tasks = [], [], []
    for i, name in enumerate(FILES):
        short = [e for e in load_examples(DATA_DIR / name).examples
                 if sum(len(m["content"]) for m in e.messages) <= MAX_CHARS]
        chosen = rng.sample(short, n_pool // len(FILES) + (i < n_pool % len(FILES)) + n_validation)
        validation += chosen[:n_validation]
        tasks += [name.split(".")[0]] * n_validation
        pool += chosen[n_validation:]
    return pool, validation, tasks


def rotate(paths: list[str], turn: int) -> list[str]:
    return paths[turn % len(paths):] + paths[:turn % len(paths)]


def warmed_model(model_path, dtype: str, checkpoint, device: str = "cpu"):
    model = add_lora(load_base_model(model_path, dtype, device), LORA)
    load_weights_into(model, checkpoint)
    model.eval()
    return model


def loss_pass(model, items, pad_id) -> np.ndarray:
    losses = np.zeros(len(items))
    with torch.no_grad():
        for batch in token_budget_batches(items, BATCHING.token_budget, BATCHING.max_batch_size):
            losses[batch] = model_per_example_loss(model, collate([items[i] for i in batch], pad_id)).cpu().numpy()
    return losses


def training_floor(model, items, pad_id) -> None:
    """Plain training's forward and backward (no optimizer) on the features' batches: the floor
    the features' throughput is measured against."""
    for batch in token_budget_batches(items, FEATURES.token_budget, FEATURES.max_batch_size):
        model_per_example_loss(model, collate([items[i] for i in batch], pad_id)).sum().backward()
    model.zero_grad(set_to_none=True)


def selections(pool_features: np.ndarray, val_features: np.ndarray, ids: list[str], tasks: list[str]) -> dict:
    """LESS's and BIDS's 15% selections from one checkpoint's features (weight 1)."""
    scores = (pool_features @ val_features.T).astype(np.float32)
    columns = [{"task": t, "id": f"v{j}"} for j, t in enumerate(tasks)]
    limit = max(1, round(0.15 * len(ids)))
    return {"less": top_rows(task_means(scores, columns).max(axis=1), ids, limit).ids,
            "bids": bids_ranking(scores, ids, columns, {}, limit).ids}


class Timer:
    """Seconds and, on CUDA, the peak of allocated memory above the start (MiB) of one stage."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        self.seconds = time.perf_counter() - self.start
        return False


def run_stages(paths: list[str], n_pool: int, n_validation: int, repeats: int = 1, device: str = "cpu",
               floor: bool = False, log=print) -> dict:
    """Every stage for every dtype path on the same examples, interleaved: {"rate", "peak", "out",
    "ids", "tasks", "tokens"}. ``floor``: also plain training forward+backward on the features'
    batches."""
    model_path = prepare_real_model("smollm2-135m")
    tokenizer = load_tokenizer(model_path)
    pool, validation, tasks = sample(n_pool, n_validation)
    pool_data = TokenizedData.of(tokenizer, pool, FEATURES.max_length)
    val_data = TokenizedData.of(tokenizer, validation, FEATURES.max_length)
    rate: dict[tuple[str, str], list[float]] = {}
    peak: dict[tuple[str, str], float] = {}
    out: dict = {}

    def record(stage: str, dtype: str, timer: Timer, n: int) -> None:
        rate.setdefault((stage, dtype), []).append(n / timer.seconds)
        if timer.cuda:
            peak[stage, dtype] = max(peak.get((stage, dtype), 0.0), timer.peak)

    turn = 0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for dtype in rotate(paths, turn):
                base = load_base_model(model_path, dtype, device)
                with Timer(device) as timer:
                    result = train_model(base, tokenizer, pool, TRAIN, Path(tmp) / f"warmup-{dtype}-{repeat}")
                record("warmup", dtype, timer, len(pool))
                out["warmup loss", dtype] = result.epoch_losses[-1]
                if dtype == "float32":
                    checkpoint = result.checkpoints[-1]
                log(f"warmup {dtype}: {rate['warmup', dtype][-1]:.3f} ex/s, loss {result.epoch_losses[-1]:.4f}")
                del base, result
            turn += 1
        for repeat in range(repeats):
            for dtype in rotate(paths, turn):
                model = warmed_model(model_path, dtype, checkpoint, device)
                moments = AdamMoments(checkpoint, list(lora_modules(model)), device)
                found = {}
                with Timer(device) as timer:
                    for part, data, adam in (("pool", pool_data, True), ("validation", val_data, False)):
                        folder = Path(tmp) / f"features-{dtype}-{repeat}-{part}"
                        store = FeatureStore.open_or_create(folder, [it.id for it in data.items], FEATURES.dim,
                                                            "float32", {})
                        extract_features(model, data, store, FEATURES, moments=moments if adam else None)
                        found[part] = store.block(0, len(data.items))
                record("features", dtype, timer, len(pool) + len(validation))
                out["features", dtype] = found
                if floor:
                    with Timer(device) as timer:
                        training_floor(model, pool_data.items + val_data.items, tokenizer.pad_token_id)
                    record("training forward+backward, features' batches", dtype, timer,
                           len(pool) + len(validation))
                with Timer(device) as timer:
                    out["losses", dtype] = loss_pass(model, pool_data.items, tokenizer.pad_token_id)
                record("loss pass", dtype, timer, len(pool))
                with Timer(device) as timer:
                    held, _ = heldout_losses(model, tokenizer, validation, BATCHING)
                record("held-out loss", dtype, timer, len(validation))
                out["held-out", dtype] = float(np.mean([v for v in held if v is not None]))
                log(f"features {dtype}: {rate['features', dtype][-1]:.3f} ex/s; loss pass "
                    f"{rate['loss pass', dtype][-1]:.3f} ex/s; held-out loss {out['held-out', dtype]:.5f}")
                del model, moments
                turn += 1
    return {"rate": rate, "peak": peak, "out": out, "ids": [it.id for it in pool_data.items], "tasks": tasks,
            "tokens": sum(len(it) for it in pool_data.items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=90)
    parser.add_argument("--validation", type=int, default=4, help="examples per validation task (3 tasks)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paths", nargs="+", default=["float32", "bfloat16-autocast", "bfloat16"])
    parser.add_argument("--floor", action="store_true", help="also time plain training on the features' batches")
    parser.add_argument("--out", default="benchmarks/results/cpu_dtype.md")
    args = parser.parse_args()
    paths = args.paths if args.paths[0] == "float32" else ["float32", *args.paths]
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bfloat16 in hardware: "
          f"{cpu_has_fast_bfloat16()}; load average at start {load[0]:.1f}", flush=True)
    runs = run_stages(paths, args.pool, args.validation, args.repeats, floor=args.floor,
                      log=lambda m: print(m, flush=True))
    text = table(runs, paths, f"{os.cpu_count()} CPU cores, {args.repeats} repeat(s), paths interleaved; load "
                 f"average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other work shared the "
                 "machine)")
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"`python benchmarks/cpu_dtype.py {' '.join(sys.argv[1:])}`\n\n{text}\n")


def table(runs: dict, paths: list[str], where: str) -> str:
    """The speed table (best of the repeats, ratios to float32) and the precision table."""
    rate, out, ids, tasks = runs["rate"], runs["out"], runs["ids"], runs["tasks"]
    reference = selections(out["features", "float32"]["pool"], out["features", "float32"]["validation"], ids, tasks)
    header = "| stage | " + " | ".join(f"{p} ex/s" for p in paths) + " | " + \
        " | ".join(f"{p} / float32" for p in paths[1:]) + " |"
    rows = [f"SmolLM2-135M-Instruct; pool {len(ids)} real examples ({runs['tokens']} tokens, ≤ 256 each), validation "
            f"{len(tasks)} ({len(set(tasks))} tasks); LoRA r=8 q/k/v/o; {where}.", "", header,
            "|---" * (1 + 2 * len(paths) - 1) + "|"]
    for stage in dict.fromkeys(stage for stage, _ in rate):
        best = {p: max(rate[stage, p]) for p in paths}
        rows.append(f"| {stage} | " + " | ".join(f"{best[p]:.3f}" for p in paths) + " | " +
                    " | ".join(f"{best[p] / best['float32']:.2f}×" for p in paths[1:]) + " |")
    paired = []  # each repeat's ratio, the paths of one repeat run back to back
    for stage in dict.fromkeys(stage for stage, _ in rate):
        for p in paths[1:]:
            ratios = [low / f32 for low, f32 in zip(rate[stage, p], rate[stage, "float32"])]
            paired.append(f"{stage} {p} " + ", ".join(f"{r:.2f}×" for r in ratios))
    rows += ["", "Repeat by repeat, against float32: " + "; ".join(paired) + "."]
    rows += ["", "| precision against float32 | " + " | ".join(paths[1:]) + " |", "|---" * len(paths) + "|"]
    cos, less, bids, held, loss, warm = [], [], [], [], [], []
    for p in paths[1:]:
        f32, low = out["features", "float32"], out["features", p]
        both = [np.sum(f32[k] * low[k], axis=1) / (np.linalg.norm(f32[k], axis=1) * np.linalg.norm(low[k], axis=1))
                for k in ("pool", "validation")]
        cosine = np.concatenate(both)
        cos.append(f"min {cosine.min():.5f}, median {np.median(cosine):.5f}, {np.mean(cosine < 0.999):.0%} below 0.999")
        picked = selections(low["pool"], low["validation"], ids, tasks)
        less.append(f"{len(set(picked['less']) & set(reference['less'])) / len(reference['less']):.1%}")
        bids.append(f"{len(set(picked['bids']) & set(reference['bids'])) / len(reference['bids']):.1%}")
        held.append(f"{out['held-out', p] / out['held-out', 'float32'] - 1:+.3%}")
        rel = np.abs(out["losses", p] - out["losses", "float32"]) / out["losses", "float32"]
        loss.append(f"mean {rel.mean():.3%}, max {rel.max():.3%}")
        warm.append(f"{out['warmup loss', p] / out['warmup loss', 'float32'] - 1:+.3%}")
    for name, values in (("features' cosine per example (pool and validation)", cos),
                         ("LESS 15% selection overlap", less), ("BIDS 15% selection overlap", bids),
                         ("mean held-out loss, relative difference", held),
                         ("loss pass, per-example relative difference", loss),
                         ("warmup's mean training loss, relative difference", warm)):
        rows.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
