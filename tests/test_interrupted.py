"""An interrupted stage resumes only its own work: a rerun with other settings is refused naming the
difference, or starts afresh under --restart; shard work is never silently recomputed; the
learning-rate schedule never goes negative; Ctrl-C is one line naming the stage."""
from __future__ import annotations

import pytest

from instruct_select.artifacts import STARTED, restarting, run_stage
from instruct_select.errors import ArtifactMismatchError
from instruct_select.train.schedule import lr_at


def _interrupted_build(folder):
    (folder / "partial.bin").write_bytes(b"half")
    raise KeyboardInterrupt


def test_interrupted_stage_refuses_other_settings_and_restarts_on_request(tmp_path):
    stage = tmp_path / "stage"
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, "train", {"epochs": 2}, {"data": "a"}, _interrupted_build)
    assert (stage / STARTED).is_file() and not (stage / "manifest.json").exists()
    with pytest.raises(ArtifactMismatchError, match=r"(?s)interrupted 'train'.*epochs: was 2, now 3.*--restart"):
        run_stage(stage, "train", {"epochs": 3}, {"data": "a"}, lambda f: {})
    with pytest.raises(ArtifactMismatchError, match=r"inputs\.data: was 'a', now 'b'"):
        run_stage(stage, "train", {"epochs": 2}, {"data": "b"}, lambda f: {})
    # The same settings resume: build sees what the interrupted run left.
    seen = []
    run_stage(stage, "train", {"epochs": 2}, {"data": "a"},
              lambda f: seen.append((f / "partial.bin").exists()) or {})
    assert seen == [True]
    # Under --restart, an interrupted stage started otherwise is discarded and built afresh.
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        run_stage(other, "train", {"epochs": 2}, {}, _interrupted_build)
    with restarting():
        result = run_stage(other, "train", {"epochs": 5}, {},
                           lambda f: {"leftover": (f / "partial.bin").exists()})
    assert result.manifest["outputs"] == {"leftover": False} and result.manifest["settings"] == {"epochs": 5}


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_learning_rate_never_negative(schedule):
    rates = [lr_at(step, 10, 1e-3, schedule, 0.1) for step in range(30)]  # 20 steps past the end
    assert min(rates) >= 0 and rates[-1] == rates[10]


def test_ctrl_c_is_one_line_naming_the_stage(tmp_path, capsys, monkeypatch):
    import instruct_select.run.stages as stages
    from instruct_select.cli import main

    pool = tmp_path / "p.jsonl"
    pool.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n' * 1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_selector", interrupted)
    assert main(["select", "--pool", str(pool), "--budget", "1", "--out", str(tmp_path / "sel")]) == 130
    err = capsys.readouterr().err  # the stage's own lines (its start, and that it failed), then one error line
    assert err.endswith("\nerror: interrupted during select; rerun the same command to resume (finished stages are "
                        "kept)\n") and "Traceback" not in err


def test_unmerged_shard_work_is_refused_not_recomputed(tmp_path):
    from instruct_select.run.context import RunContext
    from instruct_select.run.producers.sharded import StoreStage, sharded_store_stage

    folder = tmp_path / "influence" / "features" / "pool" / "epoch-1"
    (folder / "shard-1-of-2").mkdir(parents=True)
    calls = []
    with pytest.raises(ArtifactMismatchError, match=r"shard-1-of-2.*instruct-select merge .*influence/features"):
        sharded_store_stage(RunContext(), folder, StoreStage("features", {}, {}, {}), [],
                            lambda *a: calls.append(a) or {})
    assert calls == []


def test_a_finished_stage_keeps_no_started_record(tmp_path):
    run_stage(tmp_path / "s", "x", {"a": 1}, {}, lambda f: {})
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["manifest.json"]
