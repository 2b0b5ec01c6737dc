"""The built-in defaults are the LESS/BIDS papers' recipe; the lab states its own values; and
`run --dry-run` prints the effective settings, marking each one that comes from a default."""
from __future__ import annotations

from pathlib import Path

import yaml

from instruct_select.cli import main
from instruct_select.config import (FeatureSettings, InfluenceSettings, LoraSettings, RunConfig, TrainSettings,
                                    from_dict, load_yaml)
from instruct_select.run.effective_settings import DEFAULT_MARK, describe_effective_settings, effective_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The settings a config omits at its peril: the papers' values (METHODS §1, §2; the recipe).
RECIPE_KEYS = ("learning_rate", "warmup_ratio", "batching", "batch_size", "max_length", "lora.r", "lora.alpha",
               "lora.dropout", "lora.target_modules")


def _get(settings, dotted: str):
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


def test_defaults_are_the_papers_recipe():
    lora = LoraSettings()
    assert (lora.r, lora.alpha, lora.dropout) == (128, 512, 0.1)
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    train = TrainSettings()
    assert (train.batching, train.batch_size, train.learning_rate) == ("examples", 128, 2e-5)
    assert (train.warmup_ratio, train.max_length, train.epochs, train.schedule) == (0.03, 2048, 2, "linear")
    influence = InfluenceSettings()
    assert influence.warmup.epochs == 4 and influence.warmup.lora == lora
    assert influence.warmup.learning_rate == 2e-5 and influence.warmup.batching == "examples"
    assert FeatureSettings().dim == 8192 and FeatureSettings().max_length == 2048


def test_a_config_that_omits_the_recipe_gets_the_real_model_recipes_values():
    """A config naming only its data runs the LESS/BIDS recipe (configs/bids_llama3_8b.yaml) in every
    setting that recipe gives as the papers' (its micro-batch limits and schedule are its own)."""
    bare = from_dict(RunConfig, {"model": "m", "pool": "p"})
    recipe = from_dict(RunConfig, load_yaml(CONFIGS / "bids_llama3_8b.yaml"))
    for section in ("influence.warmup", "train"):
        for key in RECIPE_KEYS:
            assert _get(bare, f"{section}.{key}") == _get(recipe, f"{section}.{key}"), f"{section}.{key}"
    assert bare.influence.warmup.epochs == recipe.influence.warmup.epochs == 4
    assert bare.influence.features.dim == recipe.influence.features.dim == 8192


def test_the_lab_states_every_recipe_setting_it_uses():
    """configs/lab.yaml (equal to the lab presets, test_configs.py) takes none of the papers' values
    by default: its results do not move when the defaults do."""
    data = load_yaml(CONFIGS / "lab.yaml")
    rows = {name: default for name, _, default in effective_settings(from_dict(RunConfig, data), data)}
    for section in ("influence.warmup", "train"):
        for key in RECIPE_KEYS:
            if key not in ("batch_size", "lora.target_modules"):  # unused by token_budget / stated in full
                assert rows[f"{section}.{key}"] is False, f"{section}.{key} comes from a default"
    assert rows["influence.features.max_length"] is False and rows["influence.features.dim"] is False


def test_effective_settings_mark_what_comes_from_a_default():
    data = {"model": "m", "pool": "p", "train": {"epochs": 3, "lora": {"r": 16}},
            "learning_percentage": {"selection_train": None}}
    rows = {name: (value, default) for name, value, default in effective_settings(from_dict(RunConfig, data), data)}
    assert rows["model"] == ("m", False) and rows["run_dir"] == ("runs/run", True)
    assert rows["train.epochs"] == (3, False) and rows["train.lora.r"] == (16, False)
    assert rows["train.lora.alpha"] == (512, True) and rows["train.learning_rate"] == (2e-5, True)
    # a section left out is default throughout, with the values its default factory gives
    assert rows["influence.warmup.epochs"] == (4, True) and rows["influence.warmup.lora.r"] == (128, True)
    # a section given as null is one stated leaf
    assert rows["learning_percentage.selection_train"] == (None, False)
    assert rows["learning_percentage.epochs"] == (3, True)
    text = describe_effective_settings(from_dict(RunConfig, data), data)
    line = {ln.split()[0]: ln for ln in text.splitlines()[1:]}
    assert line["train.lora.r"].split()[1:] == ["16"]
    assert line["train.lora.alpha"].split()[1:] == ["512.0", DEFAULT_MARK]
    assert line["train.lora.target_modules"].endswith(DEFAULT_MARK)


def test_run_dry_run_prints_the_effective_settings(tiny_lab, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool),
                                      "methods": ["random"], "budgets": ["10%"],
                                      "train": {"epochs": 1, "batching": "token_budget"}}))
    assert main(["run", str(config), "train.learning_rate=1e-4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.startswith("  ")}
    assert lines["train.learning_rate"] == ["0.0001"]  # from the command line: stated
    assert lines["train.batching"] == ['"token_budget"'] and lines["train.epochs"] == ["1"]
    assert lines["train.batch_size"] == ["128", DEFAULT_MARK]
    assert lines["train.lora.r"] == ["128", DEFAULT_MARK]
    assert lines["influence.warmup.epochs"] == ["4", DEFAULT_MARK]
    assert lines["influence.features.dim"] == ["8192", DEFAULT_MARK]
    assert lines["methods"] == ['["random"]']
    assert "from built-in defaults" in out
