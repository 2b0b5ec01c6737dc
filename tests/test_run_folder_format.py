"""Run folders outlive the code that wrote them: every path the layout builds is pinned here, as
runs before the package's reorganisation (issue 22) wrote it, so a folder written then is found,
resumed or refused by name now. A change to this table is a change of the on-disk format."""
from __future__ import annotations

from pathlib import Path

from instruct_select.layout import Arm, RunLayout, TrainFolders


def test_every_path_of_a_run_folder_is_the_one_older_runs_wrote():
    run = RunLayout("R")
    arm = run.arm(Arm("bids", "0.15", seed=2, selected_by="small"))
    paths = {
        "warmup": run.warmup, "warmup_data": run.warmup_data, "features": run.feature_store("pool", 3),
        "scores": run.scores, "ifd": run.ifd_losses, "hidden": run.hidden_states("validation"),
        "representations": run.representations("pool"), "embed": run.encoder_embeddings("pool"),
        "lp_train": run.selection_model("small").train, "lp_losses": run.selection_model().losses,
        "lp_embeddings": run.selection_model().embeddings,
        "arm_select": arm.select, "arm_model": arm.model, "arm_evaluation": arm.evaluation,
        "full": run.arm(Arm("full", "100%", seed=1)).train, "base": run.base.evaluation,
        "checkpoint": TrainFolders(run.warmup).checkpoint(4), "warmup_model": TrainFolders(run.warmup).model,
        "results": run.results_json, "experiments": run.experiments_md, "ideal_round": run.ideal_round(2),
        "ideal_final": run.ideal_final, "ideal_summary": run.ideal_summary, "agreement": run.agreement("a", "b"),
        "report": run.report, "data": run.data, "child": run.child("seed-0").scores,
    }
    assert {k: v.as_posix() for k, v in paths.items()} == {
        "warmup": "R/influence/warmup", "warmup_data": "R/influence/warmup-data",
        "features": "R/influence/features/pool/epoch-3", "scores": "R/influence/scores",
        "ifd": "R/influence/ifd-losses", "hidden": "R/influence/hidden-states/validation",
        "representations": "R/influence/representations/pool", "embed": "R/influence/embed/pool",
        "lp_train": "R/influence/learning_percentage-small/train",
        "lp_losses": "R/influence/learning_percentage/losses",
        "lp_embeddings": "R/influence/learning_percentage/embeddings",
        "arm_select": "R/bids-15pct-seed2-by-small/select", "arm_model": "R/bids-15pct-seed2-by-small/train/model",
        "arm_evaluation": "R/bids-15pct-seed2-by-small/evaluation", "full": "R/full-seed1/train",
        "base": "R/base/evaluation", "checkpoint": "R/influence/warmup/checkpoints/epoch-4",
        "warmup_model": "R/influence/warmup/model", "results": "R/results.json", "experiments": "R/experiments.md",
        "ideal_round": "R/ideal/round-2", "ideal_final": "R/ideal/final", "ideal_summary": "R/ideal/summary.json",
        "agreement": "R/agreement-a-vs-b.json", "report": "R/report", "data": "R/data",
        "child": "R/seed-0/influence/scores",
    }


def test_a_training_run_written_before_is_found_by_its_checkpoints(tmp_path):
    """train/loop.py and train/checkpoint.py take their folders from the layout now: a checkpoint
    folder named the old way (checkpoints/epoch-E/checkpoint.json) is listed."""
    from instruct_select.train.checkpoint import INFO, list_checkpoints

    for epoch in (2, 1):
        folder = Path(tmp_path / "train" / "checkpoints" / f"epoch-{epoch}")
        folder.mkdir(parents=True)
        (folder / INFO).write_text(f'{{"epoch": {epoch}, "mean_lr": 0.1, "beta1": 0.9, "beta2": 0.999, '
                                   f'"eps": 1e-8, "step": {3 * epoch}}}')
    assert [(c.epoch, c.step, c.path.name) for c in list_checkpoints(tmp_path / "train")] == [(1, 3, "epoch-1"),
                                                                                             (2, 6, "epoch-2")]
