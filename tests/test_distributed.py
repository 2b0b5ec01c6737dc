"""torch.distributed: two CPU processes (gloo) give the same warmup, features, matrix, loss
trajectories, embeddings and selections as one process; independent --shard jobs merge into the
same features."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from instruct_select.distributed import Shard
from instruct_select.errors import ConfigError


def _config(lab, run_dir) -> dict:
    train = {"epochs": 2, "learning_rate": 3e-3, "warmup_ratio": 0.05, "batching": "token_budget", "token_budget": 2048,
             "max_length": 128, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    return {
        "model": str(lab.model("small")), "pool": str(lab.pool), "validation": str(lab.validation),
        "run_dir": str(run_dir), "methods": ["less", "bids", "lp-hard"], "budgets": ["10%"], "dtype": "float32",
        "device": "cpu", "finetune": False,
        "influence": {"warmup": train,
                      "features": {"dim": 64, "dtype": "float32", "max_length": 128, "token_budget": 2048}},
        "learning_percentage": {"epochs": 2, "selection_train": train, "clusters": 3},
    }


def _run(args, nproc: int, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if nproc == 1:
        command = [sys.executable, "-m", "instruct_select", "--quiet", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                   "--master_port", "29517", "-m", "instruct_select", "--quiet", *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def _outputs(run_dir):
    influence = run_dir / "influence"
    lp = influence / "learning_percentage"
    features = {p.relative_to(influence).as_posix(): np.load(p / "features.npy")
                for p in sorted((influence / "features").glob("*/epoch-*"))}
    # Loss trajectories (epochs 0..2) and embeddings of the learning-percentage selection model.
    features.update({p.relative_to(lp).as_posix(): np.load(p / "features.npy")
                     for p in [*sorted((lp / "losses").glob("epoch-*")), lp / "embeddings"]})
    scores = np.load(influence / "scores" / "scores.npy")
    selections = {p.parent.name: (p / "selection.tsv").read_text()
                  for p in sorted(run_dir.glob("*/select"))}
    # How sensitive each example's LP = (P0 - P1) / (P0 - Pn) is to its losses: P0 / |P0 - Pn|.
    perplexity = {e: dict(zip(json.loads((lp / "losses" / e / "ids.json").read_text()),
                              np.exp(np.load(lp / "losses" / e / "features.npy")[:, 0])))
                  for e in ("epoch-0", "epoch-2")}
    condition = {i: p0 / max(abs(p0 - perplexity["epoch-2"][i]), 1e-12) for i, p0 in perplexity["epoch-0"].items()}
    return features, scores, selections, condition


def test_two_processes_and_shard_jobs_equal_one_process(tiny_lab, tmp_path):
    outputs = []
    for nproc in (1, 2):
        run_dir = tmp_path / f"run{nproc}"
        config = tmp_path / f"c{nproc}.yaml"
        config.write_text(yaml.safe_dump(_config(tiny_lab, run_dir)))
        _run(["run", str(config)], nproc, tmp_path)
        outputs.append(_outputs(run_dir))
    # Independent jobs: warmup once, two shard jobs, a merge, then the rest.
    config = tmp_path / "c3.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_lab, tmp_path / "run3")))
    _run(["run", str(config), "--stop-after", "warmup"], 1, tmp_path)
    _run(["run", str(config), "--shard", "1/2"], 1, tmp_path)
    features = tmp_path / "run3" / "influence" / "features"
    incomplete = subprocess.run([sys.executable, "-m", "instruct_select", "merge", str(features)],
                                capture_output=True, text=True)
    assert incomplete.returncode == 2 and "missing [0]" in incomplete.stderr
    _run(["run", str(config), "--shard", "0/2"], 1, tmp_path)
    _run(["merge", str(features)], 1, tmp_path)
    _run(["run", str(config)], 1, tmp_path)
    outputs.append(_outputs(tmp_path / "run3"))
    for other in outputs[1:]:
        _assert_same(outputs[0], other)
    for run in ("run2", "run3"):
        merged = json.loads((tmp_path / run / "influence" / "features" / "pool" / "epoch-1" / "manifest.json").read_text())
        assert merged["outputs"]["merged_shards"] == ["shard-0-of-2", "shard-1-of-2"]
    lp = tmp_path / "run2" / "influence" / "learning_percentage"
    for folder in (lp / "losses" / "epoch-2", lp / "embeddings"):  # computed by two ranks, then merged
        assert json.loads((folder / "manifest.json").read_text())["outputs"]["merged_shards"] == [
            "shard-0-of-2", "shard-1-of-2"]


def _assert_same(first, second):
    (f1, s1, sel1, condition), (f2, s2, sel2, _) = first, second
    # pool and validation features at 2 checkpoints, losses at 3 epochs, embeddings
    assert f1.keys() == f2.keys() and len(f1) == 4 + 3 + 1
    for name in f1:
        # float32 rounding only: a shard's batches group the layers' GEMMs differently (seen: 4e-6 relative).
        np.testing.assert_allclose(f2[name], f1[name], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(s2, s1, atol=1e-6, rtol=0)
    assert sel1.keys() == sel2.keys() and len(sel1) == 3
    for name in sel1:
        rows1 = [line.split("\t") for line in sel1[name].splitlines()[1:]]
        rows2 = [line.split("\t") for line in sel2[name].splitlines()[1:]]
        assert [r[:3] for r in rows1] == [r[:3] for r in rows2]  # same ids, same order
        # Learning percentage is a ratio of perplexity differences: losses equal to 1e-6 give LPs
        # equal to about 1e-6 x P0 / |P0 - Pn| relative, large where training barely moved an
        # example's loss (such examples are ranked by the raw ratio, as the reference does).
        for (_, id_, _, a), (*_, b) in zip(rows1, rows2):
            if name.startswith("lp-"):
                assert abs(float(a) - float(b)) <= 1e-5 * condition[id_] * (1 + abs(float(a))) + 1e-5, (id_, a, b)
            else:
                assert float(a) == pytest.approx(float(b), rel=1e-4, abs=1e-5)


def test_shard_parsing():
    assert Shard.parse("1/4") == Shard(1, 4) and Shard.parse(None) == Shard(0, 1)
    assert Shard(1, 3).take(list(range(8))) == [1, 4, 7]
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            Shard.parse(bad)
