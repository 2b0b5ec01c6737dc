"""Resume after SIGKILL: a run killed part-way through warmup, features or scoring completes when
rerun, and its result equals an uninterrupted run. No reader sees a half-written artifact."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import yaml

from test_distributed import _config, _outputs

# The stage to slow down (so the kill lands inside it) and the file whose appearance triggers it.
# The slowdown is test instrumentation in the child process, not a switch in the package.
DRIVER = """
import sys, time
stage = sys.argv[2]
if stage == "warmup":
    import instruct_select.train.loop as m
    real = m._accumulate_gradients
    m._accumulate_gradients = lambda *a, **k: (time.sleep(0.05), real(*a, **k))[1]
elif stage == "features":
    import instruct_select.features.extract as m
    real = m.projected_features
    m.projected_features = lambda *a, **k: (time.sleep(0.3), real(*a, **k))[1]
else:
    import instruct_select.features.store as m
    real = m.FeatureStore.block
    m.FeatureStore.block = lambda *a, **k: (time.sleep(0.3), real(*a, **k))[1]
from instruct_select.cli import main
sys.exit(main(["--quiet", "run", sys.argv[1]]))
"""


def _kill_when(command, path, stage_dir, tmp_path) -> bool:
    """Start ``command``, SIGKILL it once ``path`` exists; True if the stage was unfinished then."""
    proc = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not path.exists():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not (stage_dir / "manifest.json").exists()


def test_sigkill_then_rerun_equals_uninterrupted(tiny_lab, tmp_path):
    baseline = tmp_path / "base.yaml"
    baseline.write_text(yaml.safe_dump(_config(tiny_lab, tmp_path / "base")))
    subprocess.run([sys.executable, "-m", "instruct_select", "--quiet", "run", str(baseline)], check=True,
                   cwd=tmp_path, capture_output=True)
    want = _outputs(tmp_path / "base")

    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_lab, run)))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    influence = run / "influence"
    kill_points = [
        ("warmup", influence / "warmup" / "checkpoints" / "epoch-1", influence / "warmup"),
        ("features", influence / "features" / "pool" / "epoch-1" / "done.npy", influence / "features" / "pool" / "epoch-1"),
        ("scores", influence / "scores" / "scores.npy.partial", influence / "scores"),
    ]
    for stage, trigger, stage_dir in kill_points:
        interrupted = _kill_when([sys.executable, str(driver), str(config), stage], trigger, stage_dir, tmp_path)
        assert interrupted, f"the kill came after {stage} had finished"
        if stage == "scores":
            assert not (influence / "scores" / "scores.npy").exists()  # readers never see half a matrix
    subprocess.run([sys.executable, "-m", "instruct_select", "--quiet", "run", str(config)], check=True,
                   cwd=tmp_path, capture_output=True)
    got = _outputs(run)
    for name in want[0]:
        np.testing.assert_allclose(got[0][name], want[0][name], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got[1], want[1], atol=1e-6, rtol=0)
    assert {k: [line.split("\t")[1] for line in v.splitlines()[1:]] for k, v in got[2].items()} == \
        {k: [line.split("\t")[1] for line in v.splitlines()[1:]] for k, v in want[2].items()}
