"""Mismatched artifacts are refused, saying what differs and what to do."""
from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from instruct_select.config import RunConfig, from_dict
from instruct_select.errors import ArtifactMismatchError
from instruct_select.features.store import FeatureStore
from instruct_select.run.pipeline import run_config
from test_distributed import _config


@pytest.fixture(scope="module")
def finished_run(tiny_lab, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mismatch") / "run"
    data = _config(tiny_lab, run_dir)
    run_config(from_dict(RunConfig, data))
    return data


def _rerun(data, **changes):
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    run_config(from_dict(RunConfig, data))


def test_other_projection_is_refused(finished_run):
    with pytest.raises(ArtifactMismatchError, match=r"(?s)projection_seed: was 0, now 1.*delete"):
        _rerun(finished_run, influence__features__projection_seed=1)
    with pytest.raises(ArtifactMismatchError, match=r"dim: was 64, now 32"):
        _rerun(finished_run, influence__features__dim=32)


def test_other_model_or_tokenizer_is_refused(finished_run, tiny_lab, tmp_path):
    # An exact copy is the same model (its manifest says so): no refusal.
    same = tmp_path / "same-model"
    shutil.copytree(tiny_lab.model("small"), same)
    _rerun(finished_run, model=str(same))
    other = tmp_path / "other-model"
    shutil.copytree(tiny_lab.model("small"), other)
    (other / "manifest.json").unlink()
    config = other / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    with pytest.raises(ArtifactMismatchError, match=r"inputs\.model: was"):
        _rerun(finished_run, model=str(other))
    tokenizer_changed = tmp_path / "tok-model"
    shutil.copytree(tiny_lab.model("small"), tokenizer_changed)
    (tokenizer_changed / "manifest.json").unlink()
    config = (tokenizer_changed / "tokenizer_config.json")
    config.write_text(config.read_text().replace("<|pad|>", "<|end|>", 1))
    with pytest.raises(ArtifactMismatchError, match=r"inputs\.model: was"):
        _rerun(finished_run, model=str(tokenizer_changed))


def test_other_warmup_settings_are_refused(finished_run):
    with pytest.raises(ArtifactMismatchError, match=r"settings\.train\.lora\.r: was 4, now 8"):
        _rerun(finished_run, influence__warmup__lora__r=8)


def test_store_from_another_checkpoint_is_refused(finished_run, tmp_path):
    from pathlib import Path

    folder = Path(finished_run["run_dir"]) / "influence" / "features" / "pool" / "epoch-1"
    store = FeatureStore.open(folder)
    with pytest.raises(ArtifactMismatchError, match=r"checkpoint: was 'epoch-1', now 'epoch-2'"):
        FeatureStore.open_or_create(folder, store.ids, store.dim, store.meta["dtype"],
                                    {**{k: v for k, v in store.meta.items() if k not in ("dim", "dtype", "rows")},
                                     "checkpoint": "epoch-2"})


def test_scores_from_other_features_are_refused(finished_run):
    from pathlib import Path

    from instruct_select.influence.attribution import attribution_into

    features = Path(finished_run["run_dir"]) / "influence" / "features"
    pool_1 = FeatureStore.open(features / "pool" / "epoch-1")
    val_2 = FeatureStore.open(features / "validation" / "epoch-2")
    with pytest.raises(ArtifactMismatchError, match="differ in checkpoint"):
        attribution_into(np.zeros((len(pool_1.ids), len(val_2.ids)), np.float32), [pool_1], [val_2], [1.0])


def test_other_pool_is_refused(finished_run, tmp_path):
    from pathlib import Path

    pool = Path(finished_run["pool"]).read_text().splitlines()
    smaller = tmp_path / "pool.jsonl"
    smaller.write_text("\n".join(pool[:-5]) + "\n")
    with pytest.raises(ArtifactMismatchError, match=r"inputs\.data: was"):
        _rerun(finished_run, pool=str(smaller))
