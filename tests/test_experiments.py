"""The experiments command: budgets x seeds x methods, mean ± spread tables, the results section."""
from __future__ import annotations

from conftest import tiny_lab_settings
from instruct_select.experiments import run_experiments, write_results_section


def test_experiments_tables_and_results_section(tiny_lab, tmp_path, monkeypatch):
    from instruct_select.lab import presets
    from instruct_select.config import LoraSettings, TrainSettings

    monkeypatch.setattr(presets, "lab_train_settings", lambda seed=0, **kw: TrainSettings(
        epochs=1, learning_rate=3e-3, token_budget=2048, max_length=128, seed=seed, lora=LoraSettings(r=4, alpha=8)))
    import instruct_select.demo as demo
    monkeypatch.setattr(demo, "lab_train_settings", presets.lab_train_settings)
    markdown, runs = run_experiments(tmp_path / "exp", tiny_lab.root, ["5%", "10%"], [0, 1], ["random", "full"],
                                     model_size="small", lab=tiny_lab_settings(), progress=False, log=lambda m: None)
    assert set(runs) == {"5%", "10%"} and len(runs["5%"]["random"]) == 2
    assert "Budget 5% (mean ± std over seeds 0, 1)" in markdown and "| random |" in markdown
    assert "±" in markdown and "base (no tuning)" in markdown
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nHand-written notes stay.\n")
    write_results_section(results, "k", "Title", "first")
    write_results_section(results, "k", "Title", "second")
    text = results.read_text()
    assert "Hand-written notes stay." in text and "second" in text and "first" not in text
    assert text.count("<!-- BEGIN k -->") == 1
