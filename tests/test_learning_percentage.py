"""Learning percentage: LP formulas on hand-computed trajectories, the treatment of examples that did
not move, exact per-cluster budgets, the three orderings, seeded k-means, Kendall τ, batched loss
trajectories against a one-at-a-time reference, resuming, and the whole path on the tiny lab.

The selector module is imported inside the tests (fixture ``lp``), not at collection: importing it
registers lp-hard/lp-easy/lp-random, and other test files parametrise over the registry when they
are collected.
"""
from __future__ import annotations

import importlib
import itertools
import json
import math

import numpy as np
import pytest
import torch

from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.context import RunContext
from instruct_select.data.batching import Batching, collate
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.example import Example
from instruct_select.data.loading import load_examples
from instruct_select.errors import ConfigError, InputError
from instruct_select.features.embeddings import Embeddings
from instruct_select.loss import model_per_example_loss
from instruct_select.features.store import FeatureStore
from instruct_select.features.trajectories import LossTrajectories, fill_loss_store, loss_trajectories_stage
from instruct_select.select.kmeans import kmeans


@pytest.fixture(scope="module")
def lp():
    return importlib.import_module("instruct_select.select.learning_percentage")


def _run_selector(*args, **kwargs):
    from instruct_select.select.selection import run_selector

    return run_selector(*args, **kwargs)


def _pool(ids, task="t"):
    return [Example(i, task, [{"role": "user", "content": i}, {"role": "assistant", "content": "x"}]) for i in ids]


def _trajectories(perplexities: dict[str, tuple]) -> LossTrajectories:
    ids = list(perplexities)
    return LossTrajectories.from_losses(ids, np.log(np.array([perplexities[i] for i in ids], dtype=float)))


# ------------------------------------------------------------------------------------------------
# LP values


def test_lp1_and_lp_app_pinned_on_hand_computed_trajectories(lp):
    traj = _trajectories({"a": (10, 6, 4, 2), "b": (4, 3.5, 3, 2), "c": (5, 2, 2.5, 3)})
    one = lp.learning_percentages(traj, "lp1")
    app = lp.learning_percentages(traj, "lp_app")
    # a: (10-6)/(10-2) = 0.5, app 4/10; b: 0.5/2 = 0.25, app 0.5/4; c: 3/2 = 1.5 (overshoot), app 3/5.
    np.testing.assert_allclose(one.values, [0.5, 0.25, 1.5], rtol=1e-12)
    np.testing.assert_allclose(app.values, [0.4, 0.125, 0.6], rtol=1e-12)
    assert one.counts() == {"learned": 3, "unmoved": 0, "regressed": 0, "excluded_no_loss": 0}


def test_unmoved_regressed_and_missing_examples_are_counted_not_divided(lp):
    losses = np.log([[3, 3, 3], [3, 2.9, 3.002], [2, 2.5, 3], [2, 2, 2], [4, 3, 2]])
    losses[3] = np.nan  # no response token after truncation
    traj = LossTrajectories.from_losses(["flat", "tiny", "worse", "none", "ok"], losses)
    assert traj.excluded == ["none"]
    result = lp.learning_percentages(traj, "lp1", tolerance=1e-3)
    assert result.ids == ["flat", "ok", "tiny", "worse"] and result.excluded == ["none"]
    assert np.all(np.isfinite(result.values))
    assert list(result.status) == [lp.UNMOVED, lp.LEARNED, lp.UNMOVED, lp.REGRESSED]
    # Reported values use the denominator clamped to the band: tiny -> (3 - 2.9) / (1e-3 * 3).
    np.testing.assert_allclose(result.values[2], 0.1 / 3e-3)
    assert result.counts() == {"learned": 1, "unmoved": 2, "regressed": 1, "excluded_no_loss": 1}
    with pytest.raises(ConfigError, match="lp_tolerance"):
        lp.learning_percentages(traj, "lp1", tolerance=0)
    with pytest.raises(ConfigError, match="lp_app"):
        lp.learning_percentages(LossTrajectories.from_losses(["a", "b"], np.log([[3, 2], [3, 1]])), "lp1")


def test_untrained_tail_is_ranked_last_for_hard_and_easy(lp):
    # flat2's clamped value (0.01 / 0.003) would put it before flat in lp-easy: the tail goes by id.
    perplexities = {"h1": (10, 9, 2), "h2": (10, 8, 2), "e1": (10, 3, 2), "flat": (3, 3, 3), "flat2": (3, 2.99, 3),
                    "up": (2, 3, 4), "gone": (2, 2, 2)}
    traj = _trajectories(perplexities)
    traj.losses[traj.ids.index("gone")] = np.nan
    traj = LossTrajectories.from_losses(traj.ids, traj.losses)
    pool = _pool(list(perplexities))
    artifacts = {"loss_trajectories": traj, "embeddings": (traj.ids, np.ones((7, 3)))}
    hard = _run_selector("lp-hard", pool, 6, artifacts=artifacts, options={"clusters": 1})
    easy = _run_selector("lp-easy", pool, 6, artifacts=artifacts, options={"clusters": 1})
    assert hard.ids == ["h1", "h2", "e1", "flat", "flat2", "up"]
    assert easy.ids == ["e1", "h2", "h1", "flat", "flat2", "up"]
    assert all(math.isfinite(s) for s in hard.scores + easy.scores)
    assert hard.diagnostics["status_counts"] == {"learned": 3, "unmoved": 2, "regressed": 1, "excluded_no_loss": 1}
    assert hard.diagnostics["excluded_no_loss_ids"] == ["gone"]
    assert hard.diagnostics["selected_status_counts"] == {"learned": 3, "unmoved": 2, "regressed": 1}
    assert "gone" not in hard.ids + easy.ids
    assert _run_selector("lp-hard", pool, 3, artifacts=artifacts, options={"clusters": 1}).ids == ["h1", "h2", "e1"]
    with pytest.raises(InputError, match="only 6 of 7 have a loss trajectory"):
        _run_selector("lp-hard", pool, 7, artifacts=artifacts, options={"clusters": 1})


# ------------------------------------------------------------------------------------------------
# Quotas and orderings on clustered pools


def test_largest_remainder_quotas_by_hand(lp):
    # 5 of (5, 3, 2): exact 2.5, 1.5, 1.0 -> floors 2, 1, 1; the one left goes to the lower of the tied.
    assert lp.cluster_quotas([5, 3, 2], 5).tolist() == [3, 1, 1]
    # 4 of (7, 5, 3): exact 1.87, 1.33, 0.8 -> floors 1, 1, 0; remainders 13, 5, 12 (/15).
    assert lp.cluster_quotas([7, 5, 3], 4).tolist() == [2, 1, 1]
    assert lp.cluster_quotas([1, 1, 1, 1], 2).tolist() == [1, 1, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 30, size=rng.integers(1, 12))
        total = int(rng.integers(0, sizes.sum() + 1))
        quotas = lp.cluster_quotas(sizes, total)
        exact = sizes * total / max(sizes.sum(), 1)
        assert quotas.sum() == total and np.all(quotas <= sizes)
        assert np.all(np.abs(quotas - exact) < 1)


def _blob_pool(sizes=(7, 5, 3), seed=0):
    """Well-separated blobs; each example's LP is its index inside its blob over 10."""
    rng = np.random.default_rng(seed)
    centers = np.eye(8)[: len(sizes)] * 20
    ids, vectors, blob_of, losses = [], [], {}, []
    for b, size in enumerate(sizes):
        for j in range(size):
            id_ = f"b{b}-{j:02d}"
            ids.append(id_)
            vectors.append(centers[b] + rng.normal(size=8) * 0.1)
            blob_of[id_] = b
            lp1 = (j + 1) / 10  # (P0 - P1) / (P0 - P2) with P0 = 11, P2 = 1
            losses.append(np.log([11, 11 - 10 * lp1, 1]))
    traj = LossTrajectories.from_losses(ids, np.array(losses))
    return _pool(ids), {"loss_trajectories": traj, "embeddings": Embeddings(ids, np.array(vectors, np.float32), {})}, blob_of


def test_budget_met_exactly_with_documented_rounding_on_uneven_clusters(lp):
    pool, artifacts, blob_of = _blob_pool()
    selection = _run_selector("lp-hard", pool, 4, artifacts=artifacts, options={"clusters": 3})
    per_blob = {b: sum(blob_of[i] == b for i in selection.ids) for b in range(3)}
    assert per_blob == {0: 2, 1: 1, 2: 1}  # the hand-computed quotas above
    assert sorted(selection.diagnostics["cluster_sizes"]) == [3, 5, 7]
    for limit in range(1, 16):
        ids = _run_selector("lp-random", pool, limit, artifacts=artifacts, options={"clusters": 3}, seed=limit).ids
        assert len(ids) == limit == len(set(ids))


def test_hard_easy_random_order_inside_clusters(lp):
    pool, artifacts, blob_of = _blob_pool()
    options = {"clusters": 3}
    hard = _run_selector("lp-hard", pool, "40%", artifacts=artifacts, options=options)
    easy = _run_selector("lp-easy", pool, "40%", artifacts=artifacts, options=options)
    assert len(hard.ids) == len(easy.ids) == 6
    assert sorted(hard.ids) == ["b0-00", "b0-01", "b0-02", "b1-00", "b1-01", "b2-00"]
    assert sorted(easy.ids) == ["b0-04", "b0-05", "b0-06", "b1-03", "b1-04", "b2-02"]
    assert hard.scores == sorted(hard.scores) and easy.scores == sorted(easy.scores, reverse=True)
    randoms = [_run_selector("lp-random", pool, "40%", artifacts=artifacts, options=options, seed=s) for s in range(6)]
    for selection in randoms:  # same quotas per cluster as lp-hard
        assert sorted(blob_of[i] for i in selection.ids) == sorted(blob_of[i] for i in hard.ids)
    assert len({tuple(sorted(s.ids)) for s in randoms}) > 1
    again = _run_selector("lp-random", list(reversed(pool)), "40%", artifacts=artifacts, options=options, seed=3)
    assert again.ids == randoms[3].ids  # seeded, whatever the pool order


def test_conformance_like_the_registry_test(lp):
    """What tests/test_selectors.py checks of every registered selector, with LP artifacts."""
    rng = np.random.default_rng(0)
    pool = _pool([f"p{i:03d}" for i in range(50)])
    ids = [e.id for e in pool]
    losses = np.column_stack([np.full(50, 2.0), 2.0 - rng.uniform(0.1, 1.0, 50), np.full(50, 0.5)])
    artifacts = {"loss_trajectories": LossTrajectories.from_losses(ids, losses),
                 "embeddings": Embeddings(ids, rng.normal(size=(50, 6)).astype(np.float32), {})}
    for method in ("lp-hard", "lp-easy", "lp-random"):
        first = _run_selector(method, pool, "7", seed=3, artifacts=artifacts)
        assert first.ids == _run_selector(method, list(reversed(pool)), "7", seed=3, artifacts=artifacts).ids
        assert len(set(first.ids)) == 7 and first.diagnostics["clusters"] == 5  # round(sqrt(50 / 2))
        assert len(_run_selector(method, pool, "20%", seed=3, artifacts=artifacts).ids) == 10


# ------------------------------------------------------------------------------------------------
# k-means and Kendall τ


def test_kmeans_is_deterministic_and_recovers_separated_blobs():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 4)) * 10
    truth = np.repeat(np.arange(5), [30, 10, 25, 5, 30])
    x = centers[truth] + rng.normal(size=(len(truth), 4)) * 0.2
    a, b = kmeans(x, 5, seed=7), kmeans(x, 5, seed=7)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centers, b.centers)
    # Each true blob is exactly one cluster.
    assert len({(t, l) for t, l in zip(truth, a.labels)}) == 5 and len(set(a.labels)) == 5
    assert a.inertia < kmeans(x, 2, seed=7).inertia
    with pytest.raises(ConfigError, match="between 1"):
        kmeans(x, 0)


def _tau_brute(a, b):
    c = d = only_a = only_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        if sa == 0 and sb == 0:
            continue
        if sa == 0 or sb == 0:
            only_a += sa == 0
            only_b += sb == 0
        elif sa == sb:
            c += 1
        else:
            d += 1
    return (c - d) / math.sqrt((c + d + only_a) * (c + d + only_b))


def test_kendall_tau_against_hand_computation(lp):
    assert lp.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    # One pair tied in a, one in b, four concordant: 4 / sqrt(5 * 5).
    assert lp.kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert lp.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(3, 40))
        a, b = rng.integers(0, 5, n).astype(float), rng.integers(0, 7, n).astype(float)
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert lp.kendall_tau(a, b) == pytest.approx(_tau_brute(a, b), abs=1e-12)
    with pytest.raises(ConfigError):
        lp.kendall_tau([1, 1, 1], [1, 2, 3])


def test_lp_agreement_compares_examples_both_models_learned(lp):
    a = _trajectories({"x": (10, 8, 2), "y": (10, 4, 2), "z": (10, 6, 2), "w": (3, 3, 3)})
    b = _trajectories({"x": (10, 9, 2), "y": (10, 5, 2), "z": (10, 3, 2), "w": (5, 4, 2)})
    result = lp.lp_agreement(a, b)
    # a orders x < z < y, b orders x < y < z: 2 concordant pairs, 1 discordant over 3.
    assert result["tau"] == pytest.approx(1 / 3) and result["n"] == 3
    assert result["left_out"] == {"no_loss_under_one_model": 0, "not_learned_by_both": 1}


# ------------------------------------------------------------------------------------------------
# Loss trajectories on a tiny model


def _examples():
    prompts = ["hi", "What is 2 + 3?", "Reverse the words: red green blue", "hello world, how are you today?",
               "Name the capital of Velkar." * 8]
    answers = ["hello", "5", "blue green red", "I am fine, thanks! " * 3, "Orrin"]
    return [Example(f"e{i}", "t", [{"role": "user", "content": p}, {"role": "assistant", "content": a}])
            for i, (p, a) in enumerate(zip(prompts, answers))]


def test_batched_losses_equal_one_at_a_time_reference(tiny_model_dir, tiny_tokenizer, tmp_path):
    from instruct_select.models.loading import load_base_model

    model = load_base_model(tiny_model_dir)
    examples = _examples()  # the last one's prompt fills max_length: no response token left
    store = FeatureStore.open_or_create(tmp_path / "s", [e.id for e in examples], 1, "float32", {"m": 1})
    messages = []
    out = fill_loss_store(RunContext(progress=False, log=messages.append), model, tiny_tokenizer, examples, store,
                          Batching(max_length=48, token_budget=200, max_batch_size=3))
    assert out["no_response"] == ["e4"] and "e4" in messages[0]
    items, _ = tokenize_examples(tiny_tokenizer, examples, 48)
    assert len({len(i) for i in items}) == len(items)  # mixed lengths: batches are padded
    with torch.no_grad():
        reference = [model_per_example_loss(model, collate([it], tiny_tokenizer.pad_token_id))[0].item() for it in items]
    got = np.asarray(store.features[:, 0], dtype=np.float64)
    np.testing.assert_allclose(got[:4], reference, rtol=1e-5)
    assert np.isnan(got[4]) and store.complete()


@pytest.fixture(scope="module")
def tiny_train_run(tiny_model_dir, tmp_path_factory):
    from instruct_select.stages import train_stage

    root = tmp_path_factory.mktemp("lp_train")
    pool = root / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": e.id, "task": e.task, "messages": e.messages}) + "\n"
                            for e in _examples()[:4]))
    settings = TrainSettings(epochs=2, learning_rate=5e-2, max_length=48, token_budget=96, max_batch_size=2,
                             lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    train_stage(RunContext.create(pool=pool, progress=False, log=lambda m: None), tiny_model_dir, root / "train",
                settings)
    return root


def _stage(model_dir, root, out, log):
    ctx = RunContext.create(pool=root / "pool.jsonl", progress=False, log=log)
    return loss_trajectories_stage(ctx, model_dir, root / "train", out, Batching(48, 96, 2))


def test_trajectories_follow_the_checkpoints_and_resume(tiny_model_dir, tiny_train_run, tmp_path, monkeypatch):
    from instruct_select.models.loading import load_tokenizer, load_trained

    full = _stage(tiny_model_dir, tiny_train_run, tmp_path / "full", log=lambda m: None)
    assert full.losses.shape == (4, 3) and full.epochs == 2 and full.excluded == []
    assert np.all(full.losses[:, 2] < full.losses[:, 0])  # training lowered every loss
    # The last epoch equals the trained model as saved (LoRA weights loaded by name).
    trained = load_trained(tiny_train_run / "train" / "model")
    tokenizer = load_tokenizer(tiny_train_run / "train" / "model")
    store = FeatureStore.open_or_create(tmp_path / "ref", full.ids, 1, "float32", {})
    fill_loss_store(RunContext(progress=False, log=lambda m: None), trained, tokenizer,
                    load_examples(tiny_train_run / "pool.jsonl").examples, store, Batching(48, 96, 2))
    np.testing.assert_allclose(full.losses[:, 2], store.features[:, 0], rtol=1e-5)

    # Interrupt after the first batch of epoch 0, then rerun: it resumes and ends equal.
    monkeypatch.setattr("instruct_select.features.trajectories.WRITE_EVERY_SECONDS", 0.0)  # write every batch
    calls = {"n": 0}
    original = FeatureStore.write

    def failing_write(self, ids, values):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, ids, values)

    monkeypatch.setattr(FeatureStore, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed", log=lambda m: None)
    monkeypatch.setattr(FeatureStore, "write", original)
    resumed = _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed", log=lambda m: None)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    manifest = json.loads((tmp_path / "resumed" / "epoch-0" / "manifest.json").read_text())
    assert manifest["outputs"]["computed"] == 2  # only the rows the interruption left
    messages = []
    _stage(tiny_model_dir, tiny_train_run, tmp_path / "resumed", log=messages.append)
    assert sum("already done" in m for m in messages) == 3


def test_merged_and_separate_adapters_give_the_same_losses(tiny_model_dir, tiny_train_run, tmp_path):
    """float32 merges LoRA into the weights; other dtypes keep the adapter apart: same losses."""
    from instruct_select.features.trajectories import _ModelAtEpoch
    from instruct_select.models.loading import load_tokenizer
    from instruct_select.train.checkpoint import list_checkpoints

    examples = load_examples(tiny_train_run / "pool.jsonl").examples
    tokenizer = load_tokenizer(tiny_train_run / "train" / "model")
    manifest = json.loads((tiny_train_run / "train" / "manifest.json").read_text())
    results = {}
    for merge in (True, False):
        models = _ModelAtEpoch(tiny_model_dir, manifest, None, merge=merge)
        columns = []
        for epoch, checkpoint in enumerate([None, *list_checkpoints(tiny_train_run / "train")]):
            store = FeatureStore.open_or_create(tmp_path / f"{merge}-{epoch}", [e.id for e in examples], 1, "float32", {})
            fill_loss_store(RunContext(progress=False, log=lambda m: None), models.get(checkpoint), tokenizer,
                            examples, store, Batching(48, 96, 2))
            columns.append(np.asarray(store.features[:, 0]))
        results[merge] = np.stack(columns, axis=1)
    np.testing.assert_allclose(results[True], results[False], rtol=1e-5)
    assert np.all(np.abs(results[True][:, 1] - results[True][:, 0]) > 1e-3)  # the checkpoints did change the model


# ------------------------------------------------------------------------------------------------
# End to end on the tiny lab


def test_lp_hard_end_to_end_on_tiny_lab(tiny_lab, tmp_path, lp):
    from instruct_select.config import LPSettings, RunConfig
    from instruct_select.experiments.learning_percentage import agreement_section
    from instruct_select.lab.presets import lab_train_settings
    from instruct_select.layout import RunLayout
    from instruct_select.pipeline import context_for, execute
    from instruct_select.producers import produce
    from instruct_select.select.selection import read_selected_ids

    settings = LPSettings(epochs=2, label="small", selection_train=lab_train_settings(
        epochs=2, token_budget=2048, max_length=128, lora=LoraSettings(r=4, alpha=8)))
    config = RunConfig(model=str(tiny_lab.model("small")), pool=str(tiny_lab.pool), run_dir=str(tmp_path / "run"),
                       methods=["lp-hard"], budgets=["10%"], dtype="float32", device="cpu", finetune=False,
                       learning_percentage=settings)
    produced = produce({"loss_trajectories", "embeddings"}, context_for(config, progress=False, log=lambda m: None),
                       config, RunLayout(config.run_dir))
    artifacts = {name: artifact.value for name, artifact in produced.items()}
    pool = load_examples(tiny_lab.pool).examples
    trajectories = artifacts["loss_trajectories"]
    assert isinstance(trajectories, LossTrajectories) and trajectories.losses.shape == (len(pool), 3)
    assert isinstance(artifacts["embeddings"], Embeddings) and set(produced) == set(artifacts)
    selection = _run_selector("lp-hard", pool, "10%", artifacts=artifacts)
    assert len(selection.ids) == 24 and selection.diagnostics["clusters"] == round(math.sqrt(len(pool) / 2))
    assert sum(selection.diagnostics["cluster_quotas"]) == 24
    assert set(selection.diagnostics["lp_by_task"]) == {e.task for e in pool}
    # Hardest first: the selection's LP sits below the pool's median LP.
    values = lp.learning_percentages(trajectories)
    assert np.median(selection.scores) < np.median(values.values[values.status == lp.LEARNED])
    # The pipeline reuses those artifacts, writes the same selection, and compares LP rankings.
    messages = []
    result = execute(context_for(config, progress=False, log=messages.append), config)
    assert read_selected_ids(result.arms["lp-hard @ 10% (by small)"].selection) == selection.ids
    assert sum("already done" in m or "reusing" in m for m in messages) >= 5  # train, 3 loss epochs, embeddings
    agreement_section(RunLayout(config.run_dir), ["small", "small"], settings)
    agreement = json.loads((tmp_path / "run" / "agreement-small-vs-small.json").read_text())
    assert agreement["tau"] == pytest.approx(1.0)  # the same model against itself
