"""The demo pipeline end to end on a tiny lab: every stage runs, the table is written, reruns reuse."""
from __future__ import annotations

import json
import logging

from instruct_select.config import EvalSettings, FeatureSettings, InfluenceSettings, LoraSettings, TrainSettings
from instruct_select.run.demo import DemoSettings, run_demo
from instruct_select.train.checkpoint import list_checkpoints
from conftest import tiny_lab_settings


def _settings() -> DemoSettings:
    # Lab-scale values stated in full: the built-in defaults are the papers' (8B models).
    train = TrainSettings(epochs=1, learning_rate=3e-3, warmup_ratio=0.05, batching="token_budget",
                          token_budget=2048, max_length=128, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    warmup = TrainSettings(epochs=2, learning_rate=3e-3, warmup_ratio=0.05, batching="token_budget",
                           token_budget=2048, max_length=128, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    return DemoSettings(
        budget="10%", methods=["random", "less", "bids", "full"], model_size="small", lab=tiny_lab_settings(),
        train=train, eval=EvalSettings(max_new_tokens=4, batch_size=64),
        influence=InfluenceSettings(warmup_fraction=1.0, warmup=warmup,
                                    features=FeatureSettings(dim=64, dtype="float32", max_length=128)),
    )


def test_demo_end_to_end(tiny_lab, tmp_path, caplog):
    rows = run_demo(tmp_path / "run", tiny_lab.root, _settings())
    assert list(rows) == ["base (no tuning)", "random @ 10%", "less @ 10%", "bids @ 10%", "full"]
    for row in rows.values():
        assert set(row["scores"]) == {"code", "format", "knowledge", "logic", "math"}
        assert 0 <= row["summary"]["macro"] <= 1
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| bids @ 10% |" in table and "macro" in table
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["methods"] == ["random", "less", "bids", "full"]
    # Warmup checkpoints, features and scores exist with manifests; selections have diagnostics.
    assert len(list_checkpoints(tmp_path / "run" / "influence" / "warmup")) == 2
    assert (tmp_path / "run" / "influence" / "scores" / "manifest.json").is_file()
    diagnostics = json.loads((tmp_path / "run" / "bids-10pct-seed0" / "select" / "diagnostics.json").read_text())
    assert sum(diagnostics["composition"].values()) == 24
    assert set(diagnostics["influence"]["raw"]["thi"]) == {"code", "format", "knowledge", "logic", "math"}
    assert (tmp_path / "run" / "bids-10pct-seed0" / "evaluation" / "metrics.json").is_file()
    # A second run reuses every stage and gives the same table.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        rows2 = run_demo(tmp_path / "run", tiny_lab.root, _settings())
    assert rows2 == rows
    assert sum("reusing" in m for m in caplog.messages) >= 15
