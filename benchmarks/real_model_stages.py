"""The real model's stages on this machine: SmolLM2-135M-Instruct on the small real mixed pool.

    python benchmarks/real_model_stages.py [--out runs/real-stages]

Runs each stage as its own command (the same `instruct-select` a user types) on the `demo --real`
data (200 pool examples, ≤ 1000 characters each, LoRA r=8 on q/k/v/o, max_length 256, k=2048) and
records its wall time and the command's peak resident and anonymous memory (sampled with psutil,
as `benchmarks/scale.py` does): warmup (2 epochs), gradient features (2 checkpoints, pool and
validation), attribution scores and BIDS, fine-tuning on a 15% selection (2 epochs), evaluation
(loss and 48-token greedy answers on every test set). The run folder is started afresh so that no
stage is skipped. Prints a table and writes it to OUT/stages.md.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from instruct_select.config import to_dict
from instruct_select.experiments.real_mixed import RealMixedSizes, real_mixed_config, write_real_mixed
from instruct_select.models.real import prepare_real_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import peak_memory  # noqa: E402  (the same sampler as the lab's scale benchmark)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/real-stages")
    parser.add_argument("--data-dir", default="../shared/data/real")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # a cached stage would time nothing
    sizes = RealMixedSizes.small()
    counts = write_real_mixed(args.data_dir, out / "data", sizes)
    model = prepare_real_model("smollm2-135m")
    config = to_dict(real_mixed_config(model, out / "data", out / "run", ["bids"], ["15%"]))
    config.update(evaluate_base=False, device="cpu")
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = [sys.executable, "-m", "instruct_select", "--quiet"]
    run = [*cli, "run", str(path)]
    stages = [("warmup (2 epochs)", [*run, "--stop-after", "warmup"]),
              ("features (pool Adam + validation SGD, 2 checkpoints)", [*run, "--stop-after", "features"]),
              ("scores + BIDS selection", [*run, "finetune=false"]),
              ("fine-tuning on the 15% selection (2 epochs)", [*run, "tests="]),
              ("evaluation (loss + 48-token answers)",
               [*cli, "evaluate", "--model", str(out / "run" / "bids-15pct-seed0" / "train" / "model"),
                "--tests", str(out / "data" / "tests"), "--max-new-tokens", "48", "--batch-size", "32"])]
    n_tests = sum(counts["tests"].values())
    rows = [f"SmolLM2-135M-Instruct, pool {sum(counts['pool'].values())} {counts['pool']}, validation "
            f"{sum(counts['validation'].values())}, tests {n_tests}; 2 CPU cores.", "",
            "| stage | seconds | peak resident (MiB) | peak anonymous (MiB) |", "|---|---|---|---|"]
    for name, command in stages:
        seconds, resident, anonymous = peak_memory(command)
        rows.append(f"| {name} | {seconds:.0f} | {resident:.0f} | {anonymous:.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    (out / "stages.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
