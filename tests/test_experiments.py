"""The influence experiment: budgets x seeds x methods, mean ± spread tables, the results section."""
from __future__ import annotations

from conftest import tiny_lab_settings
from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.run.demo import DemoSettings
from instruct_select.experiments import Grid, write_results_section
from instruct_select.experiments.lab_influence import run_experiments


def test_experiments_tables_and_results_section(tiny_lab, tmp_path):
    template = DemoSettings(methods=["random", "full"], model_size="small", lab=tiny_lab_settings(),
                            train=TrainSettings(epochs=1, learning_rate=3e-3, warmup_ratio=0.05,
                                                batching="token_budget", token_budget=2048, max_length=128,
                                                lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    markdown, grid = run_experiments(tmp_path / "exp", tiny_lab.root, Grid(["5%", "10%"], [0, 1]), template)
    runs = grid.rows
    assert set(runs) == {"5%", "10%"} and len(runs["5%"]["random @ 5%"]) == 2
    assert "Budget 5% (mean ± std over seeds 0, 1)" in markdown and "| random @ 5% |" in markdown
    assert "±" in markdown and "base (no tuning)" in markdown
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nHand-written notes stay.\n")
    write_results_section(results, "k", "Title", "first")
    write_results_section(results, "k", "Title", "second")
    text = results.read_text()
    assert "Hand-written notes stay." in text and "second" in text and "first" not in text
    assert text.count("<!-- BEGIN k -->") == 1
