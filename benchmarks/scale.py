"""Scale: a large lab pool through warmup -> features -> scores -> BIDS on this machine.

    python benchmarks/scale.py --pool-sizes 25000,100000 [--out runs/scale]

For each pool size, builds a lab with that pool (its own folder), then runs each stage as its own
`instruct-select run` command and records the stage's wall time and the command's peak resident
and anonymous memory (sampled with psutil). Memory should stay flat in the pool size apart from
the score matrix (N x |V| float32) and the pool itself: features are streamed to disk and scores
are computed blockwise. The labs are cached in OUT; each run folder is started afresh so that no
stage is skipped. The
warmup uses a LESS-style 5% of the pool for 2 epochs, to keep the run to the stages under test.
Prints a table and writes it to OUT/scale.md.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from instruct_select.lab.build import LabSettings, build_lab
from instruct_select.lab.presets import lab_influence_settings


def peak_memory(command: list[str]) -> tuple[float, float, float]:
    """(seconds, peak resident MiB, peak anonymous MiB) of a command's process tree, sampled every 0.1 s.

    Resident memory counts the pages of memory-mapped feature files the command has touched; those
    are page cache the kernel reclaims under pressure. Anonymous memory (resident minus file-backed
    and shared pages) is what the command itself holds: the number that must stay flat.
    """
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle = psutil.Process(proc.pid)
    peak_rss = peak_anon = 0
    while proc.poll() is None:
        try:
            infos = [p.memory_info() for p in (handle, *handle.children(recursive=True))]
            peak_rss = max(peak_rss, sum(i.rss for i in infos))
            peak_anon = max(peak_anon, sum(i.rss - i.shared for i in infos))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr.read()[-3000:]}")
    return time.time() - start, peak_rss / 2**20, peak_anon / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-sizes", default="25000,100000")
    parser.add_argument("--out", default="runs/scale")
    args = parser.parse_args()
    rows = ["| pool | stage | seconds | peak resident (MiB) | peak anonymous (MiB) |", "|---|---|---|---|---|"]
    for size in [int(s) for s in args.pool_sizes.split(",")]:
        lab = build_lab(Path(args.out) / f"lab-{size}", LabSettings(pool_size=size, sizes=("large",)))
        influence = lab_influence_settings()
        influence.warmup_fraction = 0.05
        influence.warmup.epochs = 2
        config = {"model": str(lab.model("large")), "pool": str(lab.pool), "validation": str(lab.validation),
                  "run_dir": str(Path(args.out) / f"run-{size}"), "methods": ["bids"], "budgets": ["15%"],
                  "dtype": "float32", "device": "cpu", "finetune": False,
                  "influence": {"warmup_fraction": 0.05, "warmup": {**vars(influence.warmup), "lora": vars(influence.warmup.lora)},
                                "features": vars(influence.features)}}
        shutil.rmtree(config["run_dir"], ignore_errors=True)  # a cached stage would time nothing
        path = Path(args.out) / f"scale-{size}.yaml"
        path.write_text(yaml.safe_dump(config))
        base = [sys.executable, "-m", "instruct_select", "--quiet", "run", str(path)]
        for stage, extra in (("warmup", ["--stop-after", "warmup"]), ("features", ["--stop-after", "features"]),
                             ("scores + BIDS", [])):
            seconds, resident, anonymous = peak_memory(base + extra)
            rows.append(f"| {size} | {stage} | {seconds:.0f} | {resident:.0f} | {anonymous:.0f} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    (Path(args.out) / "scale.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
