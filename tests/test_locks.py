"""One job per output folder, and a refused or failed command that leaves nothing behind (issue 23).

A stage folder is held with an OS lock (flock) from before its state is read until the stage ends:
a second job is refused naming the holder's pid, and a folder whose holder died (even by SIGKILL,
when the kernel drops the lock) is an interrupted stage that the next job resumes.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instruct_select.artifacts import LOCK, MANIFEST, STARTED, run_stage, stage_lock
from instruct_select.errors import ArtifactMismatchError, ConfigError, FolderBusyError

OK = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
# The real command in a process of its own, held inside its select stage until killed: it writes
# the signal file once it is in the stage (holding the folder's lock), then sleeps.
HELD_SELECT = """
import sys, time
import instruct_select.run.stages as stages

def held(*args, **kwargs):
    open(sys.argv[1], "w").close()
    time.sleep(600)

stages.run_selector = held
from instruct_select.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _pool(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps({**OK, "id": f"x{i}"}) + "\n" for i in range(n)))
    return path


def _cli(*args, quiet: bool = True) -> subprocess.CompletedProcess:
    flags = ["--quiet"] if quiet else []
    return subprocess.run([sys.executable, "-m", "instruct_select", *flags, *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def test_two_processes_never_share_a_folder_and_a_killed_holder_leaves_a_resumable_stage(tmp_path):
    pool, out, inside = _pool(tmp_path / "pool.jsonl"), tmp_path / "sel", tmp_path / "inside"
    command = ["select", "--pool", str(pool), "--budget", "3", "--out", str(out)]
    holder = subprocess.Popen([sys.executable, "-c", HELD_SELECT, str(inside), "--quiet", *command],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not inside.exists():
            assert holder.poll() is None, holder.communicate()
            assert time.time() < deadline, "the first job never reached its stage"
            time.sleep(0.2)
        second = _cli(*command)
        assert second.returncode == 2, second.stderr
        assert second.stderr == (f"error: {out} is in use by another job (pid {holder.pid} on {socket.gethostname()}); "
                                 "one job writes a folder at a time: wait for that job to end (or stop it), or give "
                                 "another output folder\n")
        assert (out / STARTED).is_file() and not (out / MANIFEST).exists()  # the live job's marker is left alone
        assert json.loads((out / STARTED).read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    # The holder died without a word: its marker now stands for an interrupted stage, resumed.
    third = _cli(*command, quiet=False)  # its stage lines go to stderr, also when it is not a terminal
    assert third.returncode == 0, third.stderr
    assert f"resuming the interrupted stage in {out}" in third.stderr
    assert json.loads((out / MANIFEST).read_text())["outputs"]["n_selected"] == 3
    assert not (out / LOCK).exists() and not (out / STARTED).exists()  # a finished folder holds its outputs only


def test_a_held_folder_is_refused_in_one_line_naming_the_holder(tmp_path):
    folder = tmp_path / "stage"
    with stage_lock(folder):
        with pytest.raises(FolderBusyError, match=rf"in use by another job \(pid {os.getpid()} on "):
            run_stage(folder, "select", {}, {}, lambda f: {})
        assert not (folder / STARTED).exists()
    result = run_stage(folder, "select", {}, {}, lambda f: {"n": 1})
    assert result.manifest["outputs"] == {"n": 1} and sorted(p.name for p in folder.iterdir()) == [MANIFEST]


def _fails(folder: Path) -> dict:
    raise ConfigError("lora.target_modules ['foo'] are not modules of this model")


def test_a_stage_failing_on_a_user_error_removes_what_it_started(tmp_path):
    quiet: dict = {}
    made = tmp_path / "made"
    with pytest.raises(ConfigError):
        run_stage(made, "train", {"lr": 1}, {}, _fails, **quiet)
    assert not made.exists()  # the folder this job made is gone
    given = tmp_path / "given"
    given.mkdir()
    (given / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):
        run_stage(given, "train", {"lr": 1}, {}, _fails, **quiet)
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]  # only what it added was removed
    # the corrected command goes ahead: nothing says "started with other settings"
    assert run_stage(given, "train", {"lr": 2}, {}, lambda f: {}, **quiet).manifest["settings"] == {"lr": 2}


def test_a_resumed_stage_keeps_its_marker_when_it_fails(tmp_path):
    """An interrupted stage's marker guards the partial work it describes: a failure while resuming
    keeps it, so that other settings are still refused rather than resuming someone else's state."""
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / STARTED).write_text(json.dumps({"stage": "train", "settings": {"lr": 1}, "inputs": {}, "seed": None}))
    with pytest.raises(ConfigError):
        run_stage(folder, "train", {"lr": 1}, {}, _fails)
    assert (folder / STARTED).is_file()
    with pytest.raises(ArtifactMismatchError, match="started with other settings"):
        run_stage(folder, "train", {"lr": 2}, {}, lambda f: {})
