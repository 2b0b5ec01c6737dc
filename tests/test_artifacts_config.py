"""Run directories (skip, refuse by name, atomic writes), typed settings and budgets."""
from __future__ import annotations

import json

import pytest

from instruct_select.artifacts import atomic_path, atomic_write_json, run_stage
from instruct_select.config import LoraSettings, TrainSettings, apply_overrides, from_dict, to_dict
from instruct_select.errors import ArtifactMismatchError, ConfigError
from instruct_select.budget import Budget


def test_stage_skips_same_settings_and_refuses_different(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("x")
        return {"n": 1}

    first = run_stage(tmp_path / "s", "demo", {"lr": 0.1, "lora": {"r": 8}}, {"data": "abc"}, build, seed=1)
    again = run_stage(tmp_path / "s", "demo", {"lr": 0.1, "lora": {"r": 8}}, {"data": "abc"}, build, seed=1)
    assert len(calls) == 1 and not first.skipped and again.skipped
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["settings"] == {"lr": 0.1, "lora": {"r": 8}} and manifest["seed"] == 1
    assert {"torch", "transformers", "python"} <= set(manifest["versions"]) and manifest["seconds"] >= 0
    with pytest.raises(ArtifactMismatchError, match=r"settings\.lora\.r: was 8, now 16"):
        run_stage(tmp_path / "s", "demo", {"lr": 0.1, "lora": {"r": 16}}, {"data": "abc"}, build, seed=1)
    with pytest.raises(ArtifactMismatchError, match=r"inputs\.data: was 'abc', now 'def'"):
        run_stage(tmp_path / "s", "demo", {"lr": 0.1, "lora": {"r": 8}}, {"data": "def"}, build, seed=1)
    assert len(calls) == 1


def test_failed_stage_leaves_no_manifest(tmp_path):
    def build(folder):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path / "s", "demo", {}, {}, build)
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    # Directories are replaced whole.
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("1")
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
        (tmp / "g").write_text("2")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["g"]


def test_settings_from_dict_and_overrides():
    data = apply_overrides({"epochs": 2}, ["lora.r=16", "full_finetune=False", "learning_rate=1e-4",
                                            "lora.target_modules=[q_proj, v_proj]"])
    settings = from_dict(TrainSettings, data)
    assert settings.lora.r == 16 and settings.full_finetune is False
    assert settings.learning_rate == 1e-4 and settings.lora.target_modules == ["q_proj", "v_proj"]
    assert from_dict(TrainSettings, to_dict(settings)) == settings
    with pytest.raises(ConfigError, match="unknown setting.*lora.rank.*known: lora.r"):
        from_dict(TrainSettings, {"lora": {"rank": 4}})
    with pytest.raises(ConfigError, match="epochs must be int"):
        from_dict(TrainSettings, {"epochs": "three"})
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainSettings(epochs=0)
    with pytest.raises(ConfigError, match="lora.dropout"):
        LoraSettings(dropout=1.5)
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["epochs"])


@pytest.mark.parametrize("text,kind,value,count", [
    ("15%", "fraction", 0.15, 150), ("0.15", "fraction", 0.15, 150), ("150", "count", 150, 150),
    ("1.0", "fraction", 1.0, 1000), ("1", "count", 1, 1),
])
def test_budget_parse(text, kind, value, count):
    budget = Budget.parse(text)
    assert (budget.kind, budget.value) == (kind, pytest.approx(value))
    assert budget.max_count(1000) == count


def test_budget_tokens_and_errors():
    budget = Budget.parse("100tok")
    assert budget.kind == "tokens"
    lengths = {"a": 60, "b": 30, "c": 20, "d": 5}
    assert budget.take(["a", "b", "c", "d"], 4, lengths) == ["a", "b"]
    assert budget.max_count(4, list(lengths.values())) == 3
    for bad in ("lots", "-3", "150%", "2.5"):
        with pytest.raises(ConfigError):
            Budget.parse(bad)
    with pytest.raises(ConfigError, match="larger than the pool"):
        Budget.parse("11").max_count(10)
