"""Evaluation rates of the mixture benchmark on SmolLM2-135M-Instruct: seconds per test example of
each capability (held-out loss pass + multiple-choice scoring or greedy generation and its check),
the figures ``instruct_select/experiments/mixture.py``'s time estimate (``StageRates``) is built on.

    python benchmarks/mixture_rates.py [--per-capability 8] [--dtype float32]

Each capability's first examples of the ``--small`` test files are scored on their own with the
untuned model (loading excluded); the table gives seconds per example and the untuned accuracy on
those few (a smoke check, not a result).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-capability", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from instruct_select.config import EvalSettings
    from instruct_select.data.loading import load_test_sets
    from instruct_select.evaluate.capabilities import evaluate_capabilities
    from instruct_select.experiments.mixture_data import MixtureSizes, write_mixture
    from instruct_select.models.loading import load_base_model, load_tokenizer
    from instruct_select.models.real import prepare_real_model

    torch.set_num_threads(args.threads)
    folder = prepare_real_model("smollm2-135m")
    model, tokenizer = load_base_model(folder, dtype=args.dtype, device="cpu"), load_tokenizer(folder)
    with tempfile.TemporaryDirectory() as tmp:
        write_mixture(DATA_DIR, Path(tmp), MixtureSizes.small())
        sets = load_test_sets(Path(tmp) / "tests")
    print(f"SmolLM2-135M-Instruct, {args.dtype}, {args.threads} threads, {args.per_capability} tests per "
          f"capability, batch 32; load average {os.getloadavg()[0]:.2f}")
    print("| capability | metric | s per test | untuned score on these |")
    print("|---|---|---|---|")
    for capability, examples in sets.items():
        chosen = [e for e in examples if (e.record or {}).get("checker") != "loss_only"][:args.per_capability]
        start = time.perf_counter()
        metrics = evaluate_capabilities(model, tokenizer, {capability: chosen}, EvalSettings(
            max_new_tokens=32, batch_size=32, max_length=1024, loss_token_budget=8192))
        seconds = (time.perf_counter() - start) / len(chosen)
        result = metrics["capabilities"][capability]
        print(f"| {capability} | {result['metric']} | {seconds:.2f} | {result['score']:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
