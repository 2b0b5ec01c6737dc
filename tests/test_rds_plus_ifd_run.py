"""rds+ and ifd end to end on the tiny lab through ``pipeline.run_config`` (no fine-tuning): their
producers write cached stores where the layout says, the selectors read them, a rerun reuses them."""
from __future__ import annotations

import json

from instruct_select.artifacts import finished_manifest, fingerprint_model
from instruct_select.config import RunConfig, from_dict
from instruct_select.features.store import FeatureStore
from instruct_select.layout import Arm, RunLayout
from instruct_select.run.pipeline import run_config
from instruct_select.select.selection import read_selected_ids


def _config(tiny_lab, run_dir, **changes) -> RunConfig:
    data = {"model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool), "validation": str(tiny_lab.validation),
            "run_dir": str(run_dir), "methods": ["rds+", "ifd"], "budgets": ["10%"], "dtype": "float32",
            "device": "cpu", "finetune": False,
            "influence": {"features": {"max_length": 128, "token_budget": 2048}}, **changes}
    return from_dict(RunConfig, data)


def test_rds_plus_and_ifd_end_to_end_on_tiny_lab(tiny_lab, tmp_path):
    from instruct_select.data.loading import load_examples

    config = _config(tiny_lab, tmp_path / "run")
    results = run_config(config)
    assert set(results.arms) == {"rds+ @ 10%", "ifd @ 10%"}
    layout = RunLayout(config.run_dir)
    pool, validation = load_examples(tiny_lab.pool), load_examples(tiny_lab.validation)
    for split, data in (("pool", pool), ("validation", validation)):
        store = FeatureStore.open(layout.representations(split))
        assert finished_manifest(layout.representations(split)) is not None
        assert store.complete() and sorted(store.ids) == sorted(e.id for e in data.examples)
    ifd_manifest = finished_manifest(layout.ifd_losses)
    assert ifd_manifest["inputs"]["model"] == fingerprint_model(config.model)
    assert FeatureStore.open(layout.ifd_losses).complete()

    expected = round(0.1 * len(pool.examples))
    folders = {m: layout.arm(Arm(m, "10%", config.seed)).select for m in config.methods}
    rows = (folders["ifd"] / "selection.tsv").read_text().splitlines()[1:]
    scores = [float(r.split("\t")[3]) for r in rows]
    assert len(scores) == expected and max(scores) < 1 and scores == sorted(scores, reverse=True)
    diagnostics = json.loads((folders["rds+"] / "diagnostics.json").read_text())
    assert set(diagnostics["picked_for_task"]) == {str(e.task) for e in validation.examples}
    assert sum(diagnostics["picked_for_task"].values()) == expected
    selected = {m: read_selected_ids(f) for m, f in folders.items()}

    # A rerun reuses every stage: same selections, manifests untouched.
    stamps = {p: p.stat().st_mtime_ns for p in layout.influence.rglob("manifest.json")}
    run_config(config)
    assert {p: p.stat().st_mtime_ns for p in layout.influence.rglob("manifest.json")} == stamps
    assert {m: read_selected_ids(f) for m, f in folders.items()} == selected


def test_ifd_model_scores_with_another_model(tiny_lab, tiny_model_dir, tmp_path):
    """Superfiltering's setting: another model (here a random tiny one, whose tokenizer, like GPT-2's,
    has no chat template: it gets the plain one) computes IFD for the run's model."""
    import shutil

    small = tmp_path / "small"
    shutil.copytree(tiny_model_dir, small)
    for name in ("chat_template.jinja", "chat_template.json"):
        (small / name).unlink(missing_ok=True)
    settings = json.loads((small / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (small / "tokenizer_config.json").write_text(json.dumps(settings))

    config = _config(tiny_lab, tmp_path / "run", methods=["ifd"], budgets=["5"], ifd_model=str(small))
    run_config(config)
    layout = RunLayout(config.run_dir)
    manifest = finished_manifest(layout.ifd_losses)
    assert manifest["inputs"]["model"] == fingerprint_model(small)
    assert manifest["settings"]["chat_template"] == "plain"
    assert len(read_selected_ids(layout.arm(Arm("ifd", "5", config.seed)).select)) == 5
