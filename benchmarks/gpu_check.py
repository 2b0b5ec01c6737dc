"""The GPU check (run by ``scripts/gpu_check.sh``): one table, exit status 1 on any failure.

    python benchmarks/gpu_check.py [--pool 90] [--skip-tests] [--skip-distributed]

Parts, each a row or rows of the table, each PASS or FAIL:

1. the CUDA-marked tests (``pytest -m gpu``: bfloat16 features and warmup on CUDA, batched
   generation on CUDA);
2. every stage on SmolLM2-135M-Instruct on one GPU (``cpu_dtype.run_stages`` on ``cuda``): warmup,
   gradient features, plain training forward+backward on the features' batches, loss pass and
   held-out loss, in float32 and in the dtype ``dtype: auto`` picks here (bfloat16 where the GPU has
   it), then greedy generation in that dtype. Per stage: examples/s, peak allocated memory above
   the loaded model, and the checks that make it PASS (finite losses; features' cosine to float32
   ≥ 0.99 per example; held-out loss within 1% of float32);
3. features' throughput as a fraction of plain training on the same batches;
4. with 2 or more GPUs, ``tests/test_distributed.py``'s run (warmup, features, scores, LESS, BIDS,
   learning percentage on a tiny lab) on 2 processes (torchrun, NCCL) against 1 process, equal to
   the test's tolerances.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

ROWS: list[tuple[str, str, str]] = []  # (part, result, details)


def row(part: str, ok: bool, details: str) -> bool:
    ROWS.append((part, "PASS" if ok else "FAIL", details))
    print(f"[gpu_check] {part}: {'PASS' if ok else 'FAIL'} {details}", flush=True)
    return ok


def cuda_tests() -> None:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    last = (out.stdout.strip().splitlines() or ["no output"])[-1]
    ok = out.returncode == 0 and "passed" in last
    if not ok:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n")
    row("CUDA-marked tests (pytest -m gpu)", ok, f"{last} in {time.perf_counter() - start:.0f} s")


def stages(n_pool: int) -> None:
    from cpu_dtype import run_stages

    from instruct_select.models.loading import resolve_dtype

    half = resolve_dtype("auto", "cuda")
    paths = ["float32"] if half == "float32" else ["float32", half]
    runs = run_stages(paths, n_pool, 4, device="cuda", floor=True, log=lambda m: print(f"  {m}", flush=True))
    rate, peak, out = runs["rate"], runs["peak"], runs["out"]
    for stage in dict.fromkeys(stage for stage, _ in rate):
        for dtype in paths:
            row(f"{stage}, {dtype}", True, f"{max(rate[stage, dtype]):.1f} ex/s, peak {peak[stage, dtype]:.0f} MiB "
                "above the loaded model")
    for dtype in paths:
        finite = all(math.isfinite(v) for v in (out["warmup loss", dtype], out["held-out", dtype]))
        finite = finite and bool(np.isfinite(out["losses", dtype]).all())
        row(f"losses finite, {dtype}", finite, f"warmup {out['warmup loss', dtype]:.4f}, held-out "
            f"{out['held-out', dtype]:.4f}")
        fraction = max(rate["features", dtype]) / max(rate["training forward+backward, features' batches", dtype])
        row(f"features / plain training on the same batches, {dtype}", fraction > 0, f"{fraction:.2f}")
    if len(paths) > 1:
        f32, low = out["features", "float32"], out["features", half]
        cosine = np.concatenate([np.sum(f32[k] * low[k], axis=1) / (np.linalg.norm(f32[k], axis=1) *
                                                                     np.linalg.norm(low[k], axis=1))
                                 for k in ("pool", "validation")])
        row(f"features' cosine {half} vs float32", cosine.min() >= 0.99,
            f"min {cosine.min():.5f}, median {np.median(cosine):.5f} (≥ 0.99 per example)")
        relative = out["held-out", half] / out["held-out", "float32"] - 1
        row(f"held-out loss {half} vs float32", abs(relative) <= 0.01, f"{relative:+.3%} (within 1%)")
    generation(half)


def generation(dtype: str) -> None:
    from generation_speed import plain_generate, prompts

    from instruct_select.evaluate.generation import generate_greedy, render_prompts
    from instruct_select.models.loading import load_base_model, load_tokenizer
    from instruct_select.models.real import prepare_real_model

    path = prepare_real_model("smollm2-135m")
    model, tokenizer = load_base_model(path, dtype, "cuda").eval(), load_tokenizer(path)
    questions = prompts(32)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    ours = generate_greedy(model, tokenizer, questions, 48, 16)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    start = time.perf_counter()
    theirs, tokens = plain_generate(model, tokenizer, render_prompts(tokenizer, questions), 48, 16)
    torch.cuda.synchronize()
    reference = time.perf_counter() - start
    row(f"generation, {dtype}", ours == theirs, f"{tokens / seconds:.0f} tokens/s ({reference / seconds:.2f}× "
        f"model.generate's), peak {peak:.0f} MiB; answers equal to model.generate's: {ours == theirs}")


def distributed() -> None:
    import test_distributed as td
    import yaml

    from instruct_select.lab.build import build_lab
    from instruct_select.lab.presets import tiny_lab_settings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lab = build_lab(tmp / "lab", tiny_lab_settings())
        outputs = []
        start = time.perf_counter()
        for nproc in (1, 2):
            config = td._config(lab, tmp / f"run{nproc}")
            config["device"] = "auto"  # torchrun: each rank its own GPU, NCCL
            (tmp / f"c{nproc}.yaml").write_text(yaml.safe_dump(config))
            td._run(["run", str(tmp / f"c{nproc}.yaml")], nproc, tmp)
            outputs.append(td._outputs(tmp / f"run{nproc}"))
        td._assert_same(outputs[0], outputs[1])
    row("2 processes (torchrun, NCCL) equal 1 process", True,
        f"features, scores, LESS/BIDS/lp-hard selections; {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=90)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-distributed", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch on this machine; nothing to check")
        return
    count = torch.cuda.device_count()
    print(f"[gpu_check] {count} × {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}", flush=True)
    parts = [("CUDA-marked tests", cuda_tests, args.skip_tests), ("stages on SmolLM2", lambda: stages(args.pool), False),
             ("2 processes (torchrun, NCCL) equal 1 process", distributed, args.skip_distributed or count < 2)]
    for name, part, skip in parts:
        if skip:
            ROWS.append((name, "skipped", "fewer than 2 GPUs" if "NCCL" in name else "--skip"))
            continue
        try:
            part()
        except Exception as err:  # noqa: BLE001  (a failed part is a FAIL row; the others still run)
            traceback.print_exc()
            row(name, False, f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}")
    width = max(len(p) for p, _, _ in ROWS)
    print(f"\n{'check':<{width}} | result  | details\n{'-' * width}-+---------+---------")
    for part, result, details in ROWS:
        print(f"{part:<{width}} | {result:<7} | {details}")
    failed = sum(result == "FAIL" for _, result, _ in ROWS)
    print(f"\ngpu_check: {'FAILED: ' + str(failed) + ' check(s)' if failed else 'all checks passed'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
