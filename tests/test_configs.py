"""Every shipped config validates; the real-model recipe carries the papers' settings; `run` works."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from instruct_select.cli import main
from instruct_select.config import RunConfig, apply_overrides, from_dict, load_yaml
from instruct_select.errors import ConfigError

ALL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
CONFIGS = [p for p in ALL_CONFIGS if load_yaml(p).get("kind") != "ideal"]
IDEAL_CONFIGS = [p for p in ALL_CONFIGS if load_yaml(p).get("kind") == "ideal"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates(path, tiny_lab, capsys):
    config = from_dict(RunConfig, load_yaml(path))
    assert config.methods and config.budgets
    # Placeholder data paths are found out by --dry-run, before any work...
    if not Path(config.pool).exists():
        assert main(["run", str(path), "--dry-run"]) == 2
        assert "does not exist" in capsys.readouterr().err
    # ... and with real ones the recipe is valid (the lab recipe's model folder, runs/lab/models/large,
    # must hold a model: the tiny lab's (it has only a small one), whatever this checkout's runs/ holds).
    paths = [f"pool={tiny_lab.pool}", f"validation={tiny_lab.validation}", f"tests={tiny_lab.test}"]
    if config.model.startswith("runs/"):
        paths.append(f"model={tiny_lab.model('small')}")
    assert main(["run", str(path), *paths, "--dry-run"]) == 0


@pytest.mark.parametrize("path", IDEAL_CONFIGS, ids=[p.name for p in IDEAL_CONFIGS])
def test_ideal_recipe_validates_and_run_points_to_ideal(path, tiny_lab, capsys):
    # The recipe's placeholder data paths are refused by --dry-run, by name ...
    assert main(["ideal", str(path), "--dry-run"]) == 2
    assert "error: pool: data/ideal/pool.jsonl does not exist" in capsys.readouterr().err
    # ... and with real ones the recipe is valid.
    assert main(["ideal", str(path), f"pool={tiny_lab.pool}", f"reference={tiny_lab.validation}", "--dry-run"]) == 0
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "instruct-select ideal" in capsys.readouterr().err


def test_real_model_recipe_has_the_papers_settings():
    config = from_dict(RunConfig, load_yaml(Path(__file__).resolve().parents[1] / "configs" / "bids_llama3_8b.yaml"))
    lora = config.influence.warmup.lora
    assert (lora.r, lora.alpha, lora.dropout) == (128, 512, 0.1)
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config.influence.warmup.epochs == 4 and config.influence.features.dim == 8192
    assert config.budgets == ["5%", "10%", "15%"] and set(config.methods) >= {"less", "bids"}
    assert config.train.learning_rate == 2e-5 and config.train.epochs == 2
    assert config.dtype == "bfloat16"
    # The papers' batching: 128 examples per optimizer step, BIDS's cosine decay, 2048 tokens.
    for train in (config.influence.warmup, config.train):
        assert (train.batching, train.batch_size, train.schedule, train.max_length) == ("examples", 128, "cosine", 2048)


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\npool: p\ninfluence: {warmup: {lora: {rank: 3}}}\n")
    with pytest.raises(ConfigError, match="influence.warmup.lora.rank"):
        from_dict(RunConfig, load_yaml(bad))
    assert main(["run", str(bad), "--dry-run"]) == 2


def test_run_config_end_to_end_on_tiny_lab(tiny_lab, tiny_model_dir, tmp_path):
    data = {
        "model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool), "validation": str(tiny_lab.validation),
        "tests": str(tiny_lab.test), "run_dir": str(tmp_path / "run"), "methods": ["random", "bids", "lp-hard"],
        "budgets": ["10%"], "dtype": "float32", "device": "cpu",
        "influence": {"warmup": {"epochs": 2, "learning_rate": 3e-3, "warmup_ratio": 0.05, "batching": "token_budget",
                                 "token_budget": 2048, "max_length": 128, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
                      "features": {"dim": 64, "max_length": 128, "token_budget": 2048}},
        "train": {"epochs": 1, "learning_rate": 1e-3, "warmup_ratio": 0.05, "batching": "token_budget",
                  "token_budget": 2048, "max_length": 128, "save_checkpoints": False,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "eval": {"max_new_tokens": 4},
        "learning_percentage": {"selection_model": str(tiny_model_dir), "epochs": 2, "selection_train": {
            "epochs": 2, "learning_rate": 1e-3, "warmup_ratio": 0.05, "batching": "token_budget", "token_budget": 2048,
            "max_length": 128, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--quiet", "run", str(path)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["arms"]) == {"random @ 10%", "bids @ 10%", "lp-hard @ 10%"}
    assert results["arms"]["bids @ 10%"]["summary"]["summary"]["n_capabilities"] == 5
    # Another (smaller) model computed the learning percentage: the selection model's own run.
    lp_train = json.loads((tmp_path / "run" / "influence" / "learning_percentage" / "train" / "manifest.json").read_text())
    assert lp_train["outputs"]["base_model"] == str(tiny_model_dir)
    config = from_dict(RunConfig, apply_overrides(data, ["budgets=[20%]"]))
    assert config.budgets == ["20%"]


def test_lab_config_equals_the_lab_presets():
    from instruct_select.lab.presets import lab_eval_settings, lab_influence_settings, lab_train_settings

    config = from_dict(RunConfig, load_yaml(Path(__file__).resolve().parents[1] / "configs" / "lab.yaml"))
    assert config.train == lab_train_settings()
    assert config.influence == lab_influence_settings()
    assert config.eval == lab_eval_settings()


def test_run_config_reads_unusual_pools_and_passes_selection_options(tmp_path):
    """A run reads the pool with its data settings (as the CLI's --columns / --id-field) and every
    selector sees selection_options."""
    import json as json_module

    from instruct_select.run.pipeline import context_for, execute

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json_module.dumps({"uid": f"u{i}", "q": f"question {i}", "a": f"answer {i}"}) + "\n"
                            for i in range(10)))
    config = from_dict(RunConfig, {"model": "unused", "pool": str(pool), "run_dir": str(tmp_path / "run"),
                                   "methods": ["random"], "budgets": ["3"], "finetune": False,
                                   "columns": {"prompt": "q", "response": "a"}, "id_field": "uid",
                                   "selection_options": {"less_groups": "subtask"}})
    context = context_for(config)
    assert [e.id for e in context.pool.examples][:2] == ["u0", "u1"]
    assert context.pool.examples[0].messages[-1] == {"role": "assistant", "content": "answer 0"}
    arm = execute(context, config).arms["random @ 3"]
    manifest = json_module.loads((Path(arm.selection) / "manifest.json").read_text())
    assert manifest["settings"]["options"] == {"less_groups": "subtask"}


def test_a_whole_number_is_a_float_selection_option():
    """YAML's ``uot_epsilon: 1`` is an int; a float option takes it as 1.0."""
    from instruct_select.config import _check_selection_options

    options = {"uot_epsilon": 1, "knn_c": 2.5}
    _check_selection_options(options)
    assert options == {"uot_epsilon": 1.0, "knn_c": 2.5} and isinstance(options["uot_epsilon"], float)
